"""`sim-kiosk --threaded`: the daemon as it runs in service — `Daemon.run` with its reader,
vehicle and sender threads — on the stored simulator, driven by script lines.

The scripted simulator (`launcher/simulate.py`) pumps the daemon on one thread, so a run is
deterministic; this one leaves the threads to race as they do on a Pi, so a crash test kills a
daemon whose sender is in the middle of a request while the daemon thread goes on. The
simulated clock moves only on `wait`: in ticks of TICK_MS, each followed by a moment in which
the threads act (the sender is woken, it sleeps in real time otherwise). A step ends when the
kiosk is quiet: no event queued or being handled, no timer due, no card waiting to be read, no
outbox row due, for QUIET_S on end (or after QUIET_TIMEOUT_S: a sender stopped in a crash
test's window is never quiet). So every event is handled at the simulated time it was stamped
with, and the timers due at a step's end (the sample of the last tick) fire before the next
step's event. (Between the ticks of one `wait` a timer may fire a tick late: the daemon sleeps
up to `POLL_S` in real time, and waiting for it at every tick would make a long wait slow.)
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hardware.sim.card_script import load_profiles
from hardware.sim.stored import StoredClock
from launcher.simulate import _ids
from terminal.config import Config
from terminal.errors import ScriptError
from terminal.shell.journal import OutboxRow
from terminal.station import SimHardware, build_daemon

TICK_MS = 5_000  # half the crash tests' sample interval: every sample is taken in its tick
TICK_TIMEOUT_S = 2.0
QUIET_S = 0.05
QUIET_TIMEOUT_S = 20.0
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


class ThreadedKiosk:
    """A daemon on its own threads over `hardware` and `clock` (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        data_dir: Path,
        gateway_url: str,
        key_dir: Path,
        hardware: SimHardware,
        clock: StoredClock,
        id_prefix: str,
        on_point: Callable[[str, OutboxRow], None] | None = None,
    ) -> None:
        self.hardware = hardware
        self.clock = clock
        self.profiles = load_profiles()
        ids = _ids(data_dir, id_prefix)
        self.daemon = build_daemon(
            config=replace(config, data_dir=data_dir),
            devices=hardware.devices(),
            clock=clock,
            gateway_url=gateway_url,
            key_dir=key_dir,
            new_id=lambda: next(ids),
        )
        self.daemon.sender.on_point = on_point
        self._thread = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.quiet()

    def run_line(self, line: str) -> None:
        """One script line: a card, the vehicle, or time passing; then wait until quiet."""
        words = line.split()
        hw = self.hardware
        match words:
            case ["tap", card] if card in self.profiles:
                hw.reader.present(self.profiles[card].card())
            case ["plug"]:
                hw.vehicle.plug()
            case ["unplug"]:
                hw.vehicle.unplug()
            case ["ev", ("charge" | "pause" | "done") as what]:
                {"charge": hw.vehicle.charge, "pause": hw.vehicle.pause, "done": hw.vehicle.done}[
                    what
                ]()
            case ["wait", duration] if (match := _DURATION.match(duration)) is not None:
                self._wait(int(match.group(1)) * _MS[match.group(2)])
            case _:
                raise ScriptError(1, line, "not a step of the threaded kiosk")
        self.quiet()

    def _wait(self, ms: int) -> None:
        while ms > 0:
            tick = min(ms, TICK_MS)
            self.clock.advance(tick)
            ms -= tick
            self.daemon.sender.wake()  # its back-off sleeps in real time
            deadline = time.monotonic() + TICK_TIMEOUT_S
            while self._busy() and time.monotonic() < deadline:
                time.sleep(0.001)

    def _busy(self, *, timers: bool = False) -> bool:
        daemon = self.daemon
        due = daemon.timers.next_due() if timers else None
        return (
            not daemon.events.empty()
            or daemon.handling
            or (due is not None and due <= self.clock.monotonic_ms())  # a sample, a timeout
            or self.hardware.reader.pending
            or bool(daemon.journal.due(daemon.sender.now_ms(), limit=1))
        )

    def quiet(self) -> None:
        since: float | None = None
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        while time.monotonic() < deadline:
            busy = self._busy(timers=True)
            now = time.monotonic()
            if busy:
                since = None
            elif since is None:
                since = now
            elif now - since >= QUIET_S:
                return
            time.sleep(0.005)

    def stop(self) -> None:
        self.daemon.stop()
        self._thread.join(timeout=10)
        self.daemon.journal.close()
