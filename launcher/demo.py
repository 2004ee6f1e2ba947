"""`make demo`: the kiosk on the simulator with an embedded gateway, interactive.

The daemon runs for real (its threads, a clock running `speed` times faster); you type the
driver's and the car's actions. On a terminal the demo is a full-screen view
(`launcher.demo_screen`): the driver's screen, redrawn only when it changes, the receipt's
link (kept until the next session starts), what the commands answered, a status line and a
prompt that keeps what is typed. Without a terminal (input from a pipe) it prints each new
screen and answers line by line.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.server import EmbeddedGateway
from hardware.clock import ScaledClock
from hardware.ports import Frame, PilotState
from hardware.sim.card_script import CardProfile, load_profiles
from hardware.sim.display import SimDisplay
from launcher.demo_commands import Command, Problem, help_text, parse
from terminal.config import Config
from terminal.console.commands import status_rows
from terminal.core.events import FaultCleared, FaultRaised, OutOfServiceChanged, Timer
from terminal.shell.daemon import Daemon
from terminal.shell.dir_lock import lock_directories
from terminal.shell.signed_readings import SOFTWARE_VERSION
from terminal.station import SimHardware, build_daemon, sim_keys

READY_TIMEOUT_S = 15.0
# Simulated seconds per real second. At 4 the README's walk-through typed by hand fits the
# example config's timers: 30 s to plug in (plug_in_timeout 2m), a notice stays 1.25 s, a
# receipt 15 s (its link stays in the demo until the next session), a meter sample every
# 0.25 s, and a minute of charging at 11 kW shows about 0.7 kWh.
DEFAULT_SPEED = 4.0
MAX_SPEED = 3600.0
MESSAGES_KEPT = 200

# Timers a driver waits on, as the status line names them (the others tick too fast to read).
_TIMER_LABELS = {
    Timer.AUTHORIZATION: "answer within",
    Timer.PLUG_IN: "plug in within",
    Timer.SUSPENDED: "session ends in",
    Timer.RECEIPT: "receipt shown for",
    Timer.NOTICE: "message shown for",
}
_PILOT_WORDS = {
    PilotState.A: "cable unplugged",
    PilotState.B: "cable plugged, car not asking",
    PilotState.C: "car charging",
    PilotState.D: "car charging (ventilation)",
    PilotState.E: "pilot fault (E)",
    PilotState.F: "pilot fault (F)",
}
# The screens that start a new session: the previous receipt's link is dropped then.
_SESSION_STARTS = frozenset({"authorizing"})


def _words(class_name: str) -> str:
    """`AwaitingVehicle` -> `awaiting vehicle`."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()


class DemoKiosk:
    """The daemon on the simulator with an embedded gateway, and what the view shows.

    Device threads call `_on_frame`; the view reads `frame`, `receipt_link`, `messages` and
    `status_line()` (snapshots, under one lock) and is told of a change by `on_change`."""

    def __init__(self, config: Config, data_dir: Path, *, speed: float) -> None:
        self.speed = speed
        self.clock = ScaledClock(speed)
        self.tz = ZoneInfo(config.station.timezone)
        self.station = config.station.id
        self._lock = threading.Lock()
        self.frame: Frame | None = None
        self.receipt_link: str | None = None
        self.messages: list[str] = []
        self.on_change: Callable[[], None] = lambda: None
        self.hardware = SimHardware.build(self.clock, SimDisplay(on_show=self._on_frame))
        key_dir, gateway_keys = sim_keys(data_dir, config.station.id)
        self.gateway = EmbeddedGateway(data_dir / "gateway.sqlite3", key_dir=gateway_keys)
        self.gateway.up()
        self.gateway_up = True
        config = replace(
            config,
            data_dir=data_dir,
            gateway=replace(config.gateway, receipt_url=self.gateway.url + "/receipts"),
        )
        self.daemon: Daemon = build_daemon(
            config=config,
            devices=self.hardware.devices(),
            clock=self.clock,
            gateway_url=self.gateway.url,
            key_dir=key_dir,
        )
        self.profiles: dict[str, CardProfile] = load_profiles()
        self._loop = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    # -- life ------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the daemon; True once its first screen is drawn (commands typed before
        that would be lost to start-up)."""
        self._loop.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.frame is None and self._loop.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.frame is not None

    def close(self) -> None:
        self.daemon.stop()
        self._loop.join(timeout=5)
        self.gateway.close()

    # -- what the view reads ----------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        with self._lock:
            if frame == self.frame:
                return
            self.frame = frame
            if frame.name in _SESSION_STARTS:
                self.receipt_link = None
            if frame.qr is not None and frame.qr != self.receipt_link:
                self.receipt_link = frame.qr
                self._say_locked(f"receipt: {frame.qr}")
        self.on_change()

    def say(self, *lines: str) -> None:
        """Add lines to what the commands answered."""
        with self._lock:
            self._say_locked(*lines)
        self.on_change()

    def _say_locked(self, *lines: str) -> None:
        self.messages.extend(lines)
        del self.messages[:-MESSAGES_KEPT]

    def snapshot(self) -> tuple[Frame | None, str | None, tuple[str, ...]]:
        with self._lock:
            return self.frame, self.receipt_link, tuple(self.messages)

    def status_line(self) -> str:
        """One line: station, phase, cable and car, gateway, the timer a driver waits on,
        the clock's speed and the station's local time."""
        kiosk = self.daemon.kiosk
        parts = [
            self.station,
            _words(type(kiosk.phase).__name__),
            _PILOT_WORDS.get(kiosk.pilot, f"pilot {kiosk.pilot.value}"),
            "gateway up" if self.gateway_up else "gateway DOWN",
        ]
        if kiosk.faults:
            parts.append("FAULT " + ",".join(sorted(kiosk.faults)))
        if kiosk.out_of_service:
            parts.append("OUT OF SERVICE")
        waiting = self._waiting_on()
        if waiting:
            parts.append(waiting)
        local = self.clock.now().astimezone(self.tz)
        parts.append(f"time x{self.speed:g} {local:%H:%M:%S}")
        return " | ".join(parts)

    def _waiting_on(self) -> str | None:
        due = dict(self.daemon.timers.due)  # a copy: the daemon thread owns the timers
        now = self.clock.monotonic_ms()
        named = [(at, t) for t, at in due.items() if t in _TIMER_LABELS]
        if not named:
            return None
        at, timer = min(named, key=lambda pair: pair[0])
        left_s = max(0, at - now) // 1000  # simulated seconds
        return f"{_TIMER_LABELS[timer]} {left_s} s"

    # -- what the person types --------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Act on one typed line; False when it asks to quit."""
        parsed = parse(line, self.profiles)
        if parsed is None:
            return True
        if isinstance(parsed, Problem):
            self.say(parsed.message)
            return True
        if parsed.verb == "quit":
            return False
        self.perform(parsed)
        return True

    def perform(self, command: Command) -> None:
        hw, stamp, arg = self.hardware, self.daemon.stamp, command.arg
        match command.verb:
            case "help":
                self.say("commands:", *help_text(self.profiles))
            case "status":
                s = self.daemon.status()
                rows = status_rows(s, self.clock.now(), SOFTWARE_VERSION)
                self.say(*(f"  {label:<10} {value}" for label, value in rows))
            case "tap":
                assert arg is not None
                hw.reader.present(self.profiles[arg].card())
            case "remove":
                hw.reader.remove()
            case "plug":
                hw.vehicle.plug()
            case "unplug":
                hw.vehicle.unplug()
            case "ev":
                {"charge": hw.vehicle.charge, "pause": hw.vehicle.pause, "done": hw.vehicle.done}[
                    str(arg)
                ]()
            case "fault" | "clear":
                assert arg is not None
                self._device_fault(arg, on=command.verb == "fault")
                event = FaultRaised if command.verb == "fault" else FaultCleared
                self.daemon.post(event(fault=arg, **stamp()))
            case "gateway":
                if arg == "down":
                    self.gateway.down()
                else:
                    self.gateway.up()
                self.gateway_up = arg == "up"
                self.say(f"gateway {arg}")
            case "oos":
                self.daemon.post(OutOfServiceChanged(on=arg == "on", **stamp()))
            case _:
                raise AssertionError(f"unhandled demo command {command.verb}")

    def _device_fault(self, name: str, *, on: bool) -> None:
        # As in the scripted simulator: some faults act on the simulated device itself.
        hw = self.hardware
        if name == "contactor_welded":
            (hw.contactor.weld if on else hw.contactor.unweld)()
        elif name == "meter":
            (hw.meter.silence if on else hw.meter.unsilence)()
        elif name == "reader":
            (hw.reader.unplug if on else hw.reader.replug)()


def _plain(kiosk: DemoKiosk) -> None:
    """Without a terminal: print each new screen (by name and title) and the answers."""
    shown: list[int] = [0]
    last_screen: list[str | None] = [None]

    def flush() -> None:
        frame, _, messages = kiosk.snapshot()
        if frame is not None and frame.name != last_screen[0]:
            last_screen[0] = frame.name
            print(f"[screen {frame.name}] {frame.title}", flush=True)
        for line in messages[shown[0] :]:
            print(line, flush=True)
        shown[0] = len(messages)

    kiosk.on_change = flush
    flush()
    for line in sys.stdin:
        if not kiosk.handle(line):
            break
        flush()


def main(config: Config, data_dir: Path, *, speed: float) -> int:
    """Run the demo until quit, Ctrl-C or end of input."""
    locks = lock_directories(data_dir)  # one kiosk per data dir (DirectoryInUse names it)
    try:
        locks += lock_directories(sim_keys(data_dir, config.station.id)[0])
        return _run(config, data_dir, speed=speed)
    finally:
        for lock in locks:
            lock.release()


def _run(config: Config, data_dir: Path, *, speed: float) -> int:
    kiosk = DemoKiosk(config, data_dir, speed=speed)
    try:
        print(f"ev-terminal demo: gateway on {kiosk.gateway.url}, time runs x{speed:g}", flush=True)
        if not kiosk.start():
            print("the kiosk did not start; see the log above", file=sys.stderr)
            return 1
        kiosk.say(
            f"gateway on {kiosk.gateway.url}; time runs x{speed:g}; data in {data_dir}",
            "type help; try: tap visa, plug, ev charge, tap visa, unplug",
        )
        if sys.stdin.isatty() and sys.stdout.isatty():
            from launcher.demo_screen import run_screen  # noqa: PLC0415 - a terminal only

            run_screen(kiosk)
        else:
            _plain(kiosk)
    finally:
        kiosk.close()
    link = kiosk.snapshot()[1]
    if link is not None:
        print(f"last receipt: {link}")
    print("demo stopped")
    return 0
