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
processor's own books, and the plant's register log (every capture is the tariff's price of
the energy delivered under that hold, priced here independently). Where each kill landed is
printed.

`EV_WINDOW_KILLS` sets the kills per window (default 50); `EV_CRASH_SEED` replays a run.
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardware.sim.stored import register_log
from launcher.sim_kiosk import HARDWARE_DIR
from terminal.config import load
from terminal.money import Money
from terminal.protection.keys import provision_fleet
from terminal.station import build_tariff
from tests.crash.processes import STEP_TIMEOUT_S, GatewayProcess, KioskProcess, kiosk_config
from tests.crash.test_sigkill import delivered_per_authorization
from tests.ledger_check import assert_processor_agrees, assert_records_agree
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


def session_for(kind: str, rng: random.Random) -> list[str]:
    """A driver's visit that sends a request of `kind` (after the previous car has left)."""
    card = rng.choice(CARDS)
    if kind == "void":
        return ["unplug", "wait 70s", f"tap {card}", "wait 3m"]  # never plugged in: void
    return ["unplug", "wait 70s", f"tap {card}", "plug", "ev charge", "wait 4m", f"tap {card}"]


@dataclass
class Aimed:
    """One kiosk's run: kills aimed at each (window, kind) in turn."""

    kiosk: KioskProcess
    proxy: FaultProxy
    rng: random.Random
    per_window: int
    landed: Counter[tuple[str, str]] = field(default_factory=Counter)
    missed: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.held = threading.Event()
        self.proxy.on_hold = lambda line: self.held.set()
        self.kiosk.argv.append("--threaded")  # Daemon.run: reader, vehicle, sender threads
        self.base_argv = list(self.kiosk.argv)

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
            self.kiosk.kill()
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
                        self.kiosk.kill()
                        self.landed[window, line.split()[0]] += 1
                        killed = True
                        break
                    said = self.step()
                    if said == "ok":
                        continue
                    assert said == "held" or said.startswith(f"paused {window} {kind}"), said
                    self.kiosk.kill()  # SIGKILL, inside the window
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
    gateway = GatewayProcess(tmp_path, tmp_path / "keys" / "gateway")
    runs: list[Aimed] = []
    try:
        for name in names:
            proxy = FaultProxy()
            runs.append(
                Aimed(
                    kiosk=KioskProcess(
                        config=kiosk_config(tmp_path, name),
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
    assert not [a for a in authorizations if a["status"] in ("approved", "pending")]
    for run in runs:
        unsent = [r for r in run.kiosk.journal_rows("outbox") if r["state"] == "pending"]
        assert unsent == [], f"seed {seed}: {unsent[:3]}"
    captures = Counter(m["authorization_id"] for m in moves if m["kind"] == "capture")
    assert not [a for a, n in captures.items() if n > 1]
    # The processor's own books: each hold it placed captured or released once, as the ledger.
    assert_processor_agrees(authorizations, payments)

    # Every capture is the priced energy the hardware delivered under its hold.
    tariff = build_tariff(load(kiosk_config(tmp_path, names[0])))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for run in runs:
        mine = [a for a in authorizations if a["terminal_id"] == run.kiosk.data.name]
        delivered = delivered_per_authorization(register_log(run.kiosk.data / HARDWARE_DIR), mine)
        for auth in mine:
            energy = delivered.get(auth["id"], 0)
            context = f"seed {seed}: {auth['id']} delivered {energy} Wh, ledger {auth}"
            if energy == 0:
                assert auth["status"] in ("voided", "declined", "failed"), context
                continue
            price = tariff.begin(start).advance(
                at=start, energy_wh=energy, power_w=0, current_ma=0, charging=True
            )
            assert auth["status"] == "captured", context
            assert auth["energy_wh"] == energy, context
            assert Money(auth["amount_captured"], auth["currency"]) == price.total(), context
