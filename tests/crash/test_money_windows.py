"""Crash safety aimed where money moves: kiosk processes SIGKILLed inside each money window of
each money request, at least 50 kills per window, then started again on the same files.

The windows, for an authorization, a capture and a void:
- **committed**: the request is journaled, not sent (the kiosk stops itself there,
  `sim_kiosk --pause-at committed:KIND`, and the test kills it);
- **sent**: the request has reached the gateway, the answer has not reached the kiosk (a proxy
  between them passes the request on, tells the test, and keeps the answer back);
- **answered**: the gateway's answer is in the kiosk, not journaled (`--pause-at answered:KIND`).
Between them, kills at a random moment of a random step of a session (counted by the step).

Three kiosks (`launcher.sim_kiosk --threaded`: `Daemon.run` with its reader, vehicle and
sender threads, on stored simulated hardware that outlives the process) share one gateway
process. Each kill is aimed at the next window and request kind in turn;
the session driven is one that makes that request. At the end every kiosk drains its outbox,
and three books must agree with the hardware: the journals and the gateway's ledger (every
hold ended in exactly one capture or release, nothing captured twice), the simulated
processor's own books, and the plant's register log.

The tariff is time-based (a session fee, energy, charging time and parking time, with step
sizes and VAT). Every capture is priced here independently (`tests.crash.reference_price`,
no code shared with the kiosk's price engine) from the plant's own log of the relay: energy
from the register when the relay closed and opened, charging time while it was closed,
parking time between two closings of one session (the car paused). A session whose kiosk was
killed while it ran is settled at restart from what its journal holds (charging time up to
its last journaled sample, energy from the register): its capture must be that period's
independent price, the period must lie within what the plant saw, and the energy must be
exact. Where each kill landed is printed.

`EV_WINDOW_KILLS` sets the kills per window (default 50); `EV_CRASH_SEED` replays a run.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardware.sim.plant import MS_PER_HOUR
from hardware.sim.stored import CLOCK_FILE, EPOCH, register_log
from launcher.sim_kiosk import HARDWARE_DIR
from terminal.protection.keys import provision_fleet
from tests.crash.processes import STEP_TIMEOUT_S, GatewayProcess, KioskProcess, kiosk_config
from tests.crash.reference_price import Period, reference_total
from tests.crash.test_sigkill import Closing, closings_per_authorization
from tests.ledger_check import (
    assert_processor_agrees,
    assert_records_agree,
    assert_rollup_agrees,
)
from tests.net.proxy import Fault, FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

KIOSKS = 3
WINDOWS = ("committed", "sent", "answered")
KINDS = ("authorize", "capture", "void")
RANDOM = "random"  # a kill at a random moment of a random step, between the aimed ones
MAX_RANDOM_DELAY_S = 0.08
CARDS = ("visa", "mastercard", "maestro", "girocard", "wallet", "rfid")
# The request line each kind is sent with, for the proxy's "sent" window.
REQUEST_LINE = {
    "authorize": "POST /v1/authorizations HTTP",
    "capture": "/capture HTTP",
    "void": "/void HTTP",
}


# Time-based (OCPI 2.2.1): a session fee, energy, charging time and parking time, the time
# dimensions in steps of a minute; every sample at a tick of the simulated clock (5 s), so the
# kiosk sees every change of the car's state at the instant it happens.
TARIFF: dict[str, Any] = {
    "country_code": "DE",
    "party_id": "EVT",
    "id": "crash-time-based",
    "currency": "EUR",
    "type": "AD_HOC_PAYMENT",
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": 0.50, "vat": 19.0, "step_size": 1},
                {"type": "ENERGY", "price": 0.30, "vat": 19.0, "step_size": 1},
                {"type": "TIME", "price": 2.40, "vat": 19.0, "step_size": 60},
                {"type": "PARKING_TIME", "price": 9.00, "vat": 19.0, "step_size": 60},
            ]
        }
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}
SAMPLE_INTERVAL = "5s"


def session_for(kind: str, rng: random.Random) -> list[str]:
    """A driver's visit that sends a request of `kind` (after the previous car has left);
    half the charged ones pause (parking time between two closings of the relay)."""
    card = rng.choice(CARDS)
    if kind == "void":
        return ["unplug", "wait 70s", f"tap {card}", "wait 3m"]  # never plugged in: void
    start = ["unplug", "wait 70s", f"tap {card}", "plug", "ev charge"]
    if rng.random() < 0.5:
        return [*start, "wait 4m", f"tap {card}"]
    return [*start, "wait 2m", "ev pause", "wait 95s", "ev charge", "wait 65s", f"tap {card}"]


def sim_ms(text: str) -> int:
    """A journal time (the simulated clock's aware UTC) as the plant log's milliseconds."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


@dataclass
class Aimed:
    """One kiosk's run: kills aimed at each (window, kind) in turn."""

    kiosk: KioskProcess
    proxy: FaultProxy
    rng: random.Random
    per_window: int
    landed: Counter[tuple[str, str]] = field(default_factory=Counter)
    killed_ms: list[int] = field(default_factory=list)  # the simulated time of each kill
    missed: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.held = threading.Event()
        self.proxy.on_hold = lambda line: self.held.set()
        self.kiosk.argv.append("--threaded")  # Daemon.run: reader, vehicle, sender threads
        self.base_argv = list(self.kiosk.argv)

    def kill(self) -> None:
        """SIGKILL the kiosk and note the simulated time it died at."""
        self.kiosk.kill()
        clock = json.loads((self.kiosk.data / HARDWARE_DIR / CLOCK_FILE).read_text())
        self.killed_ms.append(int(clock["monotonic_ms"]))

    def done(self) -> bool:
        return all(
            sum(n for (w, _), n in self.landed.items() if w == window) >= self.per_window
            for window in WINDOWS
        )

    def arm(self, window: str, kind: str) -> None:
        self.proxy.clear()
        self.held.clear()
        if window == RANDOM:
            self.kiosk.argv = self.base_argv
        elif window == "sent":
            self.kiosk.argv = self.base_argv
            self.proxy.inject(Fault.HOLD, match=REQUEST_LINE[kind])
        else:
            self.kiosk.argv = [*self.base_argv, "--pause-at", f"{window}:{kind}"]

    def step(self) -> str:
        """Wait for the step's end (or the start's): "ok" ("ready"), "paused …" (the kiosk
        stopped itself in a window) or "held" (the proxy holds its request's answer)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.held.is_set():
                return "held"
            try:
                line = self.kiosk.lines.get(timeout=0.005)
            except queue.Empty:
                continue
            if line is None or line.startswith("error"):
                raise AssertionError(f"{self.kiosk.data.name}: {line!r}")
            return line
        raise AssertionError(f"{self.kiosk.data.name}: silent for {STEP_TIMEOUT_S}s")

    def start(self, targets: Iterator[tuple[str, str]], window: str, kind: str) -> tuple[str, str]:
        """Start the kiosk armed for (window, kind); a recovery that reaches the window before
        the kiosk is ready is killed there too (and counted). Returns the target armed."""
        while True:
            self.arm(window, kind)
            self.kiosk.spawn()
            said = self.step()
            if said == "ready":
                return window, kind
            assert said == "held" or said.startswith(f"paused {window} {kind}"), said
            self.kill()
            self.landed[window, kind] += 1
            window, kind = next(targets)

    def drive(self) -> None:
        try:
            targets = itertools.cycle([(w, k) for k in KINDS for w in (*WINDOWS, RANDOM)])
            window, kind = self.start(targets, *next(targets))
            while not self.done():
                killed = False
                steps = session_for(kind, self.rng)
                at_random = self.rng.randrange(len(steps))
                for n, line in enumerate(steps):
                    self.kiosk.write(line)
                    if window == RANDOM and n == at_random:
                        time.sleep(self.rng.uniform(0, MAX_RANDOM_DELAY_S))
                        self.kill()
                        self.landed[window, line.split()[0]] += 1
                        killed = True
                        break
                    said = self.step()
                    if said == "ok":
                        continue
                    assert said == "held" or said.startswith(f"paused {window} {kind}"), said
                    self.kill()  # SIGKILL, inside the window
                    self.landed[window, kind] += 1
                    killed = True
                    break
                if not killed:
                    self.missed += 1  # declined, or the answer came another way: again
                    continue
                window, kind = self.start(targets, *next(targets))
            # Let every queued capture and void reach the gateway, then stop cleanly.
            self.proxy.clear()
            self.kiosk.stop()  # idle between steps, armed for a window not reached
            self.kiosk.argv = self.base_argv
            self.kiosk.start()
            for line in ("unplug", "wait 31m", "wait 10m", "wait 10m"):
                self.kiosk.step(line)
            self.kiosk.stop()
        except BaseException as exc:
            self.error = exc
            if self.kiosk.proc is not None:
                self.kiosk.kill()


def test_kills_in_every_money_window_lose_nothing_and_charge_exactly(tmp_path: Path) -> None:
    seed = int(os.environ.get("EV_CRASH_SEED", time.time_ns() % 10**9))
    per_window = int(os.environ.get("EV_WINDOW_KILLS", "50"))
    print(f"money-window seed {seed} (replay: EV_CRASH_SEED={seed})")  # noqa: T201
    names = [f"W{n}" for n in range(1, KIOSKS + 1)]
    provision_fleet(tmp_path / "keys", fleet_id="window-fleet", devices=names)
    tariff_file = tmp_path / "tariff.json"
    tariff_file.write_text(json.dumps(TARIFF))
    gateway = GatewayProcess(tmp_path, tmp_path / "keys" / "gateway")
    runs: list[Aimed] = []
    try:
        for name in names:
            proxy = FaultProxy()
            runs.append(
                Aimed(
                    kiosk=KioskProcess(
                        config=kiosk_config(
                            tmp_path,
                            name,
                            tariff_file=tariff_file,
                            sample_interval=SAMPLE_INTERVAL,
                        ),
                        data=tmp_path / name,
                        gateway_url=proxy.start(gateway.url),
                        key_dir=tmp_path / "keys" / "devices" / name,
                        id_prefix=name.lower(),
                    ),
                    proxy=proxy,
                    rng=random.Random(f"{seed}:{name}"),
                    per_window=-(-per_window // KIOSKS),
                )
            )
        threads = [threading.Thread(target=run.drive) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1200)
        authorizations = gateway.rows("authorizations")
        moves = gateway.rows("movements")
        payments = gateway.rows("sim_payments")
    finally:
        for run in runs:
            run.proxy.close()
        gateway.stop()
    for run in runs:
        assert run.error is None, f"seed {seed}: {run.kiosk.data.name}: {run.error!r}"

    landed = sum((run.landed for run in runs), Counter[tuple[str, str]]())
    per = Counter[str]()
    for (window, _), n in landed.items():
        per[window] += n
    assert per[RANDOM] > 0
    print(  # noqa: T201 - where each kill landed
        f"seed {seed}: {sum(landed.values())} kills; per window {dict(per)}; "
        f"per window and request {dict(sorted(landed.items()))}; "
        f"sessions that reached no window {sum(r.missed for r in runs)}; "
        f"{len(authorizations)} authorizations "
        f"{dict(Counter(a['status'] for a in authorizations))}"
    )
    for window in WINDOWS:
        assert per[window] >= per_window, (window, dict(per))
        for kind in KINDS:
            assert landed[window, kind] >= per_window // 10, (window, kind)  # each kind

    # The journals and the ledger agree; nothing is left open, half-done or unsent.
    sessions = [row for run in runs for row in run.kiosk.journal_rows("sessions")]
    assert_records_agree(sessions, authorizations, moves)
    assert_rollup_agrees(gateway.db_url)  # the revenue rollup survived every kill
    assert not [a for a in authorizations if a["status"] in ("approved", "pending")]
    for run in runs:
        unsent = [r for r in run.kiosk.journal_rows("outbox") if r["state"] == "pending"]
        assert unsent == [], f"seed {seed}: {unsent[:3]}"
    captures = Counter(m["authorization_id"] for m in moves if m["kind"] == "capture")
    assert not [a for a, n in captures.items() if n > 1]
    # The processor's own books: each hold it placed captured or released once, as the ledger.
    assert_processor_agrees(authorizations, payments)

    # Every capture is the independent price of what the hardware delivered under its hold.
    journal = {row["session_id"]: row for row in sessions}
    priced = Counter[str]()
    for run in runs:
        mine = [a for a in authorizations if a["terminal_id"] == run.kiosk.data.name]
        closings = closings_per_authorization(register_log(run.kiosk.data / HARDWARE_DIR), mine)
        starts = sorted(spans[0].closed_ms for spans in closings.values())
        for auth in mine:
            spans = closings.get(auth["id"], [])
            energy = delivered(spans)
            context = f"seed {seed}: {auth['id']} closings {spans}, ledger {auth}"
            if energy == 0:
                assert auth["status"] in ("voided", "declined", "failed"), context
                continue
            assert auth["status"] == "captured", context
            assert auth["energy_wh"] == energy, context
            assert auth["currency"] == TARIFF["currency"], context
            captured = auth["amount_captured"]
            if captured == reference_total(TARIFF, energy_wh=energy, periods=periods(spans)):
                priced["as the plant saw it"] += 1
                continue
            # Not the plant's whole session: only a session its kiosk died in may be settled
            # from its journal, for charging time up to the last sample it journaled.
            later = [ms for ms in starts if ms > spans[0].closed_ms]
            until = later[0] if later else None
            assert any(
                spans[0].closed_ms <= ms and (until is None or ms <= until) for ms in run.killed_ms
            ), f"{context}: priced {captured}, the plant's session costs another amount"
            row = journal[auth["id"]]
            begun, last = sim_ms(row["charging_started_at"]), sim_ms(row["last_sample_at"])
            assert begun == spans[0].closed_ms, (context, row)
            assert begun <= last <= spans[-1].opened_ms, (context, row)
            billed = [Period(charging=True, ms=last - begun)]
            assert captured == reference_total(TARIFF, energy_wh=energy, periods=billed), (
                context,
                row,
            )
            priced["from the journal after a kill"] += 1
    print(f"seed {seed}: captures priced independently: {dict(priced)}")  # noqa: T201
    assert priced["as the plant saw it"] > 0


def delivered(spans: list[Closing]) -> int:
    """Integer Wh the meter register shows between the first closing and the last opening."""
    if not spans:
        return 0
    return spans[-1].opened_wms // MS_PER_HOUR - spans[0].closed_wms // MS_PER_HOUR


def periods(spans: list[Closing]) -> list[Period]:
    """Charging while the relay was closed; parked between two closings of one session."""
    out: list[Period] = []
    for n, span in enumerate(spans):
        if n:
            out.append(Period(charging=False, ms=span.closed_ms - spans[n - 1].opened_ms))
        out.append(Period(charging=True, ms=span.opened_ms - span.closed_ms))
    return out
