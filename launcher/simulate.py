"""Scripted simulation: the daemon on the simulator with the embedded gateway and a manual
clock, driven by a plain script, one step per line.

    tap CARD | plug | ev charge | ev pause | ev done | unplug | wait DURATION
    fault NAME | clear NAME | gateway down | gateway up | restart | expect SCREEN
    out-of-service on|off | remove | pay qr card|declined|lightning | pay stop

`#` starts a comment. CARD names a card profile in hardware/sim/cards. `restart` kills the
daemon without any clean-up (as a crash or power loss would) and starts a new one on the same
data directory. After each line the simulator runs the kiosk until nothing more happens.
`pay qr METHOD` is a phone paying the QR code the kiosk shows now, through the gateway's
payment page, with the way to pay the gateway's routing offers there (`[payment]
pay_by_phone`): `card` pays by card (the simulated processor's test card that approves, or
Stripe's test card 4242… through the page's Stripe form, as stripe.js would, against
localstripe), `declined` with the card that is declined, `lightning` asks for the Lightning
invoice and has the driver's wallet (`Simulation.wallet`) pay it, then refreshes the page.
`pay stop` presses that phone's stop button.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import InitVar, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from hardware.clock import ManualClock
from hardware.sim.card_script import load_profiles
from launcher import adyen_cse
from terminal.config import Config
from terminal.core.events import FaultCleared, FaultRaised, OutOfServiceChanged
from terminal.errors import ConfigError, ScriptError, UplinkError
from terminal.protection.slots import SlotFile
from terminal.shell.daemon import Daemon
from terminal.shell.dir_lock import DirectoryLock, lock_directories
from terminal.station import SimHardware, build_daemon, sim_keys

if TYPE_CHECKING:
    from gateway.server import EmbeddedGateway
    from terminal.ocpp.client import OcppClient

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_SETTLE_ROUNDS = 1000

# Faults a script can raise by name; some act on the simulated device itself.
DEVICE_FAULTS = {"contactor_welded", "meter", "reader"}


@dataclass(frozen=True, slots=True)
class Step:
    line_no: int
    text: str
    verb: str
    args: tuple[str, ...]


def parse_script(text: str, cards: set[str]) -> list[Step]:
    """Parse and validate every line before anything runs; ScriptError names the bad line."""
    steps = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        verb, args = words[0].lower(), tuple(words[1:])
        if verb == "tap":
            if len(args) != 1 or args[0] not in cards:
                raise ScriptError(
                    number, raw, f"tap takes a card: one of {', '.join(sorted(cards))}"
                )
        elif verb in ("plug", "unplug", "restart", "remove"):
            if args:
                raise ScriptError(number, raw, f"{verb} takes no argument")
        elif verb == "ev":
            if args not in (("charge",), ("pause",), ("done",)):
                raise ScriptError(number, raw, "ev takes charge, pause or done")
        elif verb == "wait":
            if len(args) != 1 or not _DURATION.match(args[0]):
                raise ScriptError(number, raw, "wait takes a duration such as 30s, 45m, 2h, 3d")
        elif verb in ("fault", "clear"):
            if len(args) != 1 or not re.match(r"^[a-z_]{2,32}$", args[0]):
                raise ScriptError(number, raw, f"{verb} takes a fault name")
        elif verb == "gateway":
            if args not in (("down",), ("up",), ("restart",)):
                raise ScriptError(number, raw, "gateway takes down, up or restart")
        elif verb == "out-of-service":
            if args not in (("on",), ("off",)):
                raise ScriptError(number, raw, "out-of-service takes on or off")
        elif verb == "expect":
            if len(args) != 1:
                raise ScriptError(number, raw, "expect takes a screen name")
        elif verb == "pay":
            if args not in (("qr", "card"), ("qr", "declined"), ("qr", "lightning"), ("stop",)):
                raise ScriptError(
                    number, raw, "pay takes qr card, qr declined, qr lightning or stop"
                )
        else:
            raise ScriptError(number, raw, f"unknown step {verb!r}")
        steps.append(Step(number, raw, verb, args))
    return steps


@dataclass
class Simulation:
    """A kiosk on the simulator with an embedded gateway, advanced step by step.

    `route` maps the embedded gateway's URL to the one the daemon uses (a test puts a
    fault-injecting proxy in between; `gateway down/up` still act on the gateway itself).
    With `gateway_url` the daemon talks to a gateway running elsewhere instead and no gateway
    is embedded (`gateway down/up` are then errors). `with_hardware` replaces the in-memory
    simulator (e.g. one whose state survives the process), `key_dir` the device's keys, and
    `id_prefix` starts every session id (kiosks sharing one gateway need different ones).
    `gateway_db` puts the embedded gateway's ledger on another database (a PostgreSQL URL);
    `gateway_dir` is where its SQLite ledger is kept otherwise (default: the data dir).
    `processors_file` configures the embedded gateway's processors and routing (`ev-terminal
    gateway --processors`); `wallet` is the driver's Lightning wallet: it pays a BOLT 11
    invoice (`pay qr lightning`). `public_url` is the embedded gateway's public address
    (`--public-url`), which the kiosk's QR code encodes.
    The simulation holds the data and key directories (`dir_lock`) until `close`."""

    config: Config
    data_dir: Path
    clock: ManualClock = field(default_factory=ManualClock)
    route: Callable[[str], str] | None = None
    gateway_url: str | None = None
    with_hardware: InitVar[SimHardware | None] = None
    key_dir: Path | None = None
    id_prefix: str = "sim"
    gateway_db: str | None = None
    gateway_dir: Path | None = None
    processors_file: Path | None = None
    wallet: Callable[[str], object] | None = None
    public_url: str | None = None
    hardware: SimHardware = field(init=False)
    gateway: EmbeddedGateway = field(init=False)
    daemon: Daemon = field(init=False)
    restarts: int = 0
    locks: list[DirectoryLock] = field(default_factory=list)
    # With [ocpp] in the config: the OCPP client runs on its own thread, in real time (its
    # reconnect back-off here, in seconds: first retry and cap).
    ocpp_backoff_s: tuple[float, float] = (0.05, 0.5)
    ocpp: OcppClient | None = field(init=False, default=None)

    def __post_init__(self, with_hardware: SimHardware | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # One process per data directory (and key directory); held until `close`, across
        # simulated restarts, which are the same process. A caller may hand in locks it took.
        if not self.locks:
            self.locks = lock_directories(self.data_dir, self.key_dir)
        try:
            self._open(with_hardware)
        except BaseException:
            self._release()
            raise

    def _open(self, with_hardware: SimHardware | None) -> None:
        self.hardware = with_hardware or SimHardware.build(self.clock)
        self.profiles = load_profiles()
        if self.gateway_url is None:
            from gateway.server import EmbeddedGateway  # noqa: PLC0415 - the gateway extra

            _, gateway_keys = sim_keys(self.data_dir, self.config.station.id)
            ledger_dir = self.gateway_dir or self.data_dir
            ledger_dir.mkdir(parents=True, exist_ok=True)
            self.gateway = EmbeddedGateway(
                ledger_dir / "gateway.sqlite3",
                key_dir=gateway_keys,
                db_url=self.gateway_db,
                processors_file=self.processors_file,
                public_url=self.public_url,
            )
            self.gateway.up()
        self._ids = _ids(self.data_dir, self.id_prefix)
        self.phone = Phone()
        self._reset_requested = threading.Event()
        self.daemon = self._start_daemon()

    @property
    def embedded(self) -> bool:
        return self.gateway_url is None

    def daemon_url(self) -> str:
        """The gateway URL the daemon is given."""
        if self.gateway_url is not None:
            return self.gateway_url
        return self.route(self.gateway.url) if self.route is not None else self.gateway.url

    def _start_daemon(self) -> Daemon:
        key_dir = self.key_dir or sim_keys(self.data_dir, self.config.station.id)[0]
        if self.key_dir is None and len(self.locks) == 1:
            self.locks += lock_directories(key_dir)
        config = _with_data_dir(self.config, self.data_dir)
        daemon = build_daemon(
            config=config,
            devices=self.hardware.devices(),
            clock=self.clock,
            gateway_url=self.daemon_url(),
            key_dir=key_dir,
            new_id=lambda: next(self._ids),
        )
        if config.ocpp is not None:
            from terminal.ocpp.wiring import attach_ocpp  # noqa: PLC0415 - the ocpp extra

            self.ocpp = attach_ocpp(
                daemon,
                config,
                self.clock,
                on_reset=self._reset_requested.set,
                backoff_s=self.ocpp_backoff_s,
            )
        daemon.start()
        self.daemon = daemon
        if self.ocpp is not None:
            self.ocpp.start()
        self.settle()
        self.poll_commands()  # a pay code to show, a command from before a restart
        self.settle()
        return daemon

    def ocpp_drained(self, timeout_s: float = 10.0) -> bool:
        """Wait (real time) until the OCPP client is online and its queue is empty."""
        assert self.ocpp is not None
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.ocpp.online() and self.ocpp.queue.depth() == 0:
                return True
            time.sleep(0.01)
        return False

    def settle(self) -> None:
        """Run the kiosk until nothing more happens at this instant (a Reset from the CSMS
        restarts it here, on this thread)."""
        if self._reset_requested.is_set():
            self._reset_requested.clear()
            self.restart()
            return
        for _ in range(MAX_SETTLE_ROUNDS):
            busy = self.daemon.poll_devices()
            busy |= self.daemon.pump() > 0
            busy |= self.daemon.sender.drain_safely().sent > 0
            busy |= self.daemon.pump() > 0
            if not busy:
                return
        raise RuntimeError("the kiosk did not settle")

    def poll_commands(self) -> int:
        """One poll of the gateway's command channel, without waiting (the real daemon keeps a
        long poll open on a thread of its own); 0 when the gateway does not answer."""
        try:
            return self.daemon.commands.poll_once(wait_s=0)
        except UplinkError:
            return 0

    def advance(self, ms: int) -> None:
        """Let simulated time pass, stopping at every timer and sample."""
        end = self.clock.monotonic_ms() + ms
        while (now := self.clock.monotonic_ms()) < end:
            due = self.daemon.timers.next_due()
            step = end - now if due is None else max(1, min(end, due) - now)
            self.clock.advance(step)
            self.settle()

    def restart(self) -> None:
        """Crash: drop the daemon without clean-up (no contactor open, no flush), restart."""
        if self.ocpp is not None:
            self.ocpp.stop()
            self.ocpp = None
        self.daemon.journal.close()
        self.restarts += 1
        self._start_daemon()

    def run_lines(self, text: str) -> None:
        """Run script lines on this simulation (checked first, as a script is)."""
        for step in parse_script(text, set(self.profiles)):
            self.run_step(step)

    def run_step(self, step: Step) -> None:
        hw = self.hardware
        verb, args = step.verb, step.args
        stamp = self.daemon.stamp
        if verb not in ("expect", "restart"):
            self.poll_commands()
            self.settle()
        if verb == "tap":
            hw.reader.present(self.profiles[args[0]].card())
        elif verb == "remove":
            hw.reader.remove()
        elif verb == "plug":
            hw.vehicle.plug()
        elif verb == "unplug":
            hw.vehicle.unplug()
        elif verb == "ev":
            {"charge": hw.vehicle.charge, "pause": hw.vehicle.pause, "done": hw.vehicle.done}[
                args[0]
            ]()
        elif verb == "wait":
            match = _DURATION.match(args[0])
            assert match is not None
            self.advance(int(match.group(1)) * _MS[match.group(2)])
            return
        elif verb == "fault":
            self._device_fault(args[0], on=True)
            self.daemon.post(FaultRaised(fault=args[0], **stamp()))
        elif verb == "clear":
            self._device_fault(args[0], on=False)
            self.daemon.post(FaultCleared(fault=args[0], **stamp()))
        elif verb == "gateway":
            if not self.embedded:
                raise ScriptError(step.line_no, step.text, "the gateway is not embedded")
            {"down": self.gateway.down, "up": self.gateway.up, "restart": self.gateway.restart}[
                args[0]
            ]()
        elif verb == "out-of-service":
            self.daemon.post(OutOfServiceChanged(on=args[0] == "on", **stamp()))
        elif verb == "restart":
            self.restart()
            return
        elif verb == "pay":
            shown = hw.display.current
            try:
                if args == ("stop",):
                    self.phone.stop()
                elif shown is None or not shown.qr or "/pay/" not in shown.qr:
                    raise RuntimeError("no pay-by-phone QR on screen")
                elif args[1] == "lightning":
                    if self.wallet is None:
                        raise RuntimeError("no Lightning wallet to pay with")
                    self.phone.pay_lightning(shown.qr, self.wallet)
                else:
                    self.phone.pay(shown.qr, approve=args[1] == "card")
            except (RuntimeError, requests.RequestException) as exc:
                raise ScriptError(step.line_no, step.text, str(exc)) from None
            self.poll_commands()
        elif verb == "expect":
            shown = hw.display.current
            if shown is None or shown.name != args[0]:
                got = shown.name if shown else "nothing"
                raise ScriptError(
                    step.line_no, step.text, f"expected screen {args[0]}, shown {got}"
                )
            return
        self.settle()

    def _device_fault(self, name: str, *, on: bool) -> None:
        hw = self.hardware
        if name == "contactor_welded":
            (hw.contactor.weld if on else hw.contactor.unweld)()
        elif name == "meter":
            (hw.meter.silence if on else hw.meter.unsilence)()
        elif name == "reader":
            (hw.reader.unplug if on else hw.reader.replug)()

    def results(self) -> list[dict[str, Any]]:
        """One object per finished session: the terminal's settlement and what the gateway
        holds for it. `amount_captured` is the gateway's answer once the capture was
        acknowledged (0 if the gateway refused it: `settlement` is then "refused"), the
        amount asked while it is still queued; `amount_priced` is what the session cost
        before any cut to an authorized amount (the receipt's lines without LIMIT lines)."""
        settled = {"capturing": "captured", "voiding": "voided", "declined": "declined"}
        ends: dict[str, dict[str, Any]] = {}
        for row in self.daemon.journal.outbox():
            if row["kind"] in ("capture", "void"):
                ends[row["lane"]] = row
        out = []
        for row in self.daemon.journal.sessions():
            if row["status"] not in settled:
                continue
            end = ends.get(row["session_id"])
            settlement = settled[row["status"]]
            captured = row["amount_minor"] if row["status"] == "capturing" else 0
            priced = captured
            if end is not None and end["kind"] == "capture":
                body = json.loads(end["body"])
                priced = _priced(body["receipt"])
                if end["state"] == "done" and end["answer"]:
                    captured = json.loads(end["answer"])["amount_captured"]["minor"]
            if end is not None and end["state"] == "failed":
                settlement, captured = "refused", 0
            out.append(
                {
                    "session_id": row["session_id"],
                    "card_brand": row["card_brand"],
                    "card_last4": row["card_last4"],
                    "energy_wh": row["energy_wh"],
                    "amount_captured": captured,
                    "amount_priced": priced,
                    "currency": row["currency"],
                    "ended": row["end_reason"],
                    "settlement": settlement,
                    "acknowledged": bool(row["acknowledged"]),
                }
            )
        return out

    def close(self) -> None:
        try:
            if self.ocpp is not None:
                self.ocpp.stop()
            self.daemon.journal.close()
            if self.embedded:
                self.gateway.close()
        finally:
            self._release()

    def _release(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks = []


class Phone:
    """A driver's phone on the payment page, without a browser: it follows the page's links
    and posts its forms as a browser without JavaScript would."""

    def __init__(self) -> None:
        self.http = requests.Session()
        self.session_url: str | None = None
        self.pages: list[str] = []
        self.last_url: str | None = None

    def _page(self, url: str) -> str:
        self.last_url = url
        page = self.http.get(url, timeout=10)
        self.pages.append(page.text)
        if page.status_code != 200:
            raise RuntimeError(f"the payment page at {url} answered {page.status_code}")
        return page.text

    def pay(self, url: str, *, approve: bool) -> None:
        page = self._page(url)
        if 'id="way-test-card"' in page:
            form = {"method": "web_card", "test_card": "4242" if approve else "0002"}
        elif 'id="way-stripe"' in page:
            form = {"method": "web_card", "payment_method": self._stripe_card(page, approve)}
        elif 'id="way-adyen"' in page:
            form = self._adyen_card(page, approve)
        else:
            raise RuntimeError(f"the payment page at {url} offers no card")
        answer = self.http.post(url, data=form, timeout=30)
        self.pages.append(answer.text)
        if approve:
            if "/pay/sessions/" not in answer.url:
                raise RuntimeError(f"the payment was not taken ({answer.status_code})")
            self.session_url = answer.url

    def _stripe_card(self, page: str, approve: bool) -> str:
        """What the page's Stripe form does in a browser, done as its stripe.js (localstripe's)
        does it: a SetupIntent from the gateway, confirmed at Stripe with the card typed in;
        the PaymentMethod it leaves. Stripe's test cards: 4242… approves, …0341 is declined
        when charged (https://docs.stripe.com/testing)."""
        script = re.search(r'<script src="([^"]+)/js\.stripe\.com/v3/"></script>', page)
        key = re.search(r'data-key="([^"]+)"', page)
        setup = re.search(r'data-setup="([^"]+)"', page)
        if script is None or key is None or setup is None or self.last_url is None:
            raise RuntimeError("the payment page's Stripe form is not complete")
        base = urlsplit(self.last_url)
        made = self.http.post(f"{base.scheme}://{base.netloc}{setup[1]}", timeout=30)
        if made.status_code != 200:
            raise RuntimeError(f"no card setup from the gateway ({made.status_code})")
        secret = str(made.json()["client_secret"])
        intent = secret.split("_secret_", maxsplit=1)[0]
        number = "4242424242424242" if approve else "4000000000000341"
        confirmed = requests.post(
            f"{script[1]}/v1/setup_intents/{intent}/confirm",
            data=json.dumps(
                {
                    "key": key[1],
                    "use_stripe_sdk": True,
                    "client_secret": secret,
                    "payment_method_data": {
                        "type": "card",
                        "card": {
                            "number": number,
                            "exp_month": "12",
                            "exp_year": "2034",
                            "cvc": "123",
                        },
                        "billing_details": {"address": {"postal_code": "10115"}},
                    },
                }
            ),
            timeout=30,
        )
        body = confirmed.json()
        if confirmed.status_code != 200 or body.get("status") != "succeeded":
            raise RuntimeError(f"Stripe did not confirm the card ({confirmed.status_code})")
        return str(body["payment_method"])

    @staticmethod
    def _adyen_card(page: str, approve: bool) -> dict[str, str]:
        """What the page's Adyen form does in a browser (`adyen-card.js` over Adyen's CSE
        library): each card field sealed on its own with the account's public key and the
        page's generation time; only the ciphertexts are posted. Adyen's test card 4111…
        (https://docs.adyen.com/development-resources/testing/test-card-numbers); declined:
        Adyen's test environment refuses a card whose holder name is a refusal reason."""
        key = re.search(r'data-key="([0-9A-Fa-f]+\|[0-9A-Fa-f]+)"', page)
        made = re.search(r'data-generationtime="([^"]+)"', page)
        if key is None or made is None:
            raise RuntimeError("the payment page's Adyen form is not complete")
        card = {
            "number": "4111111111111111",
            "expiryMonth": "03",
            "expiryYear": "2030",
            "cvc": "737",
        }
        fields = {
            "encryptedCardNumber": "number",
            "encryptedExpiryMonth": "expiryMonth",
            "encryptedExpiryYear": "expiryYear",
            "encryptedSecurityCode": "cvc",
        }
        form = {
            "method": "web_card",
            "holderName": "Sim Driver" if approve else "NOT_ENOUGH_BALANCE",
        }
        for name, inside in fields.items():
            form[name] = adyen_cse.seal({inside: card[inside], "generationtime": made[1]}, key[1])
        return form

    def pay_lightning(self, url: str, wallet: Callable[[str], object]) -> None:
        """Ask for the invoice, pay it from `wallet`, and look at the page again (a phone
        without JavaScript refreshes it), which finds it paid."""
        page = self._page(url)
        if 'id="way-lightning"' not in page:
            raise RuntimeError(f"the payment page at {url} offers no Lightning")
        answer = self.http.post(url, data={"method": "lightning"}, timeout=30)
        self.pages.append(answer.text)
        found = re.search(r'<code id="bolt11">([a-z0-9]+)</code>', answer.text)
        if "/pay/sessions/" not in answer.url or found is None:
            raise RuntimeError(f"no Lightning invoice to pay ({answer.status_code})")
        self.session_url = answer.url
        wallet(found[1])
        # As the page refreshes itself in a browser: until the payment is settled.
        for _ in range(100):
            if 'data-paying="1"' not in self._page(self.session_url):
                return
            time.sleep(0.1)
        raise RuntimeError("the paid invoice was never settled")

    def stop(self) -> None:
        if self.session_url is None:
            raise RuntimeError("no session was paid on this phone")
        answer = self.http.post(self.session_url + "/stop", timeout=10)
        self.pages.append(answer.text)


def _ids(data_dir: Path, prefix: str = "sim") -> Iterator[str]:
    """Deterministic session ids, unique across restarts (and kills) on the same data dir:
    the counter is written before the id it makes is used, in place in a slot file
    (`protection/slots.py`), so a full disk does not stop a tap in a simulation either."""
    counter = SlotFile(data_dir / "sim-ids")
    try:
        n = int(counter.read(32))
    except FileNotFoundError:
        n = 0
    while True:
        n += 1
        counter.write(str(n).encode("ascii"))
        yield f"{prefix}-{n:08d}-0000-4000-8000-000000000000"


def _with_data_dir(config: Config, data_dir: Path) -> Config:
    return replace(config, data_dir=data_dir)


def run_script(
    config: Config,
    script: str,
    data_dir: Path | None = None,
    *,
    start: datetime | None = None,
    gateway_db: str | None = None,
    processors_file: Path | None = None,
    wallet: Callable[[str], object] | None = None,
) -> Simulation:
    """Run a whole script; ScriptError for a bad line (before anything runs) or a failed
    `expect`. `start` (aware) is when the simulated clock begins (a session across a tariff
    boundary or a DST change starts just before it). `processors_file` and `wallet`: see
    `Simulation`. The caller closes the returned simulation."""
    cards = set(load_profiles())
    steps = parse_script(script, cards)
    sim = Simulation(
        config=config,
        data_dir=data_dir or Path(tempfile.mkdtemp(prefix="evsim-")),
        clock=ManualClock(start=start),
        gateway_db=gateway_db,
        processors_file=processors_file,
        wallet=wallet,
    )
    try:
        for step in steps:
            sim.run_step(step)
    except BaseException:
        sim.close()
        raise
    return sim


def check_processors(path: Path) -> None:
    """Read a processors file as the embedded gateway will, before anything is created: a
    `ConfigError` names the key. Its simulated accounts get adapters over a database in
    memory, which nothing writes to here."""
    import sqlalchemy as sa  # noqa: PLC0415 - the gateway extra

    from gateway.processors.routing import load_routing  # noqa: PLC0415
    from gateway.processors.simulated import SimulatedProcessor  # noqa: PLC0415

    engine = sa.create_engine("sqlite://")
    try:
        load_routing(path, simulated=lambda account: SimulatedProcessor(engine, account))
    finally:
        engine.dispose()


def lnbits_wallet(url: str, admin_key: str) -> Callable[[str], object]:
    """A driver's Lightning wallet at an LNbits instance: pays a BOLT 11 invoice
    (``POST /api/v1/payments`` with ``out: true``), for `pay qr lightning`."""

    def pay(bolt11: str) -> object:
        paid = requests.post(
            f"{url.rstrip('/')}/api/v1/payments",
            json={"out": True, "bolt11": bolt11},
            headers={"X-Api-Key": admin_key},
            timeout=30,
        )
        paid.raise_for_status()
        return paid.json()

    return pay


def main(
    config: Config,
    script_path: Path,
    script: str,
    *,
    as_json: bool,
    data_dir: Path | None,
    gateway_db: str | None = None,
    processors_file: Path | None = None,
    wallet: Callable[[str], object] | None = None,
) -> int:
    """Run `script` (read from `script_path`) and print the finished sessions. A bad line, or
    a processors file the gateway refuses, is exit 2 before anything runs; a failed `expect`
    is exit 1; each one line on stderr."""
    try:
        parse_script(script, set(load_profiles()))
    except ScriptError as exc:
        print(f"ev-terminal simulate: {script_path}: {exc}", file=sys.stderr)
        return 2
    try:
        sim = run_script(
            config,
            script,
            data_dir,
            gateway_db=gateway_db,
            processors_file=processors_file,
            wallet=wallet,
        )
    except ConfigError as exc:
        where = str(processors_file)
        text = f"--processors {exc}" if exc.key == where else f"--processors {where}: {exc}"
        print(f"ev-terminal simulate: {text}", file=sys.stderr)
        return 2
    except ScriptError as exc:
        print(f"ev-terminal simulate: {script_path}: {exc}", file=sys.stderr)
        return 1
    if sim.ocpp is not None and not sim.ocpp_drained(30):
        print(
            "ev-terminal simulate: the CSMS did not take every OCPP message in 30 s",
            file=sys.stderr,
        )
    try:
        for result in sim.results():
            if as_json:
                print(json.dumps(result, sort_keys=True))
            else:
                print(
                    f"{result['session_id']} {result['card_brand']} {result['card_last4']}"
                    f" {result['energy_wh']} Wh {result['amount_captured']} {result['currency']}"
                    f" {result['settlement']} ({result['ended']})"
                )
    finally:
        sim.close()
    return 0


def _priced(receipt: dict[str, Any]) -> int:
    """What a capture's receipt priced before a LIMIT line cut it to the capture (the
    receipt's total when its lines do not say what they cost)."""
    lines = receipt["lines"]
    if any(line.get("incl_vat") is None for line in lines):
        return int(receipt["total"])
    return sum(int(line["incl_vat"]) for line in lines if line["dimension"] != "LIMIT")
