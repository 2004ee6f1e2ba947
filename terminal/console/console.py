"""The console loop: a serial port, line editing, the technician's login, the command table.

Thread: one console thread (see docs/threads.md). It reads `Daemon.status()` snapshots and
posts events; it never touches the kiosk's state or its devices. Device tests go to the daemon
thread as `DiagnosticRequested` and their answers come back through `Daemon.diagnostics.answers`
(bounded waits; ^C stops waiting).

Read-only commands are open. Commands that change anything need the technician PIN (`login`);
a login ends with `logout`, after `idle_timeout_s` without input, or when the port closes.
Wrong PINs count towards a persisted lock-out. Every login, logout, lock-out and privileged
command is logged and posted as `TechnicianActed`, which the machine reports to the gateway.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from terminal.config import Config
from terminal.console.commands import COMMANDS
from terminal.console.credential import Lockout, PinFile
from terminal.console.line import Interrupt, Line, LineEditor
from terminal.console.recent_log import RecentLog
from terminal.core.events import Diagnostic, DiagnosticRequested, TechnicianActed
from terminal.errors import KeyMaterialError
from terminal.shell.daemon import Daemon
from terminal.shell.diagnostics import Reply

log = logging.getLogger("ev_terminal.console")

READ_CHUNK = 256
ANSWER_TIMEOUT_S = 10.0  # a device test on the daemon thread answers well within this
PORT_RETRY_S = 1.0
CTRL_C = b"\x03"


class Port(Protocol):
    """What the console needs of a serial port (pyserial's `Serial` with a read timeout)."""

    def read(self, size: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSettings:
    idle_timeout_s: float = 300.0
    reader_window_s: float = 15.0


class Console:
    def __init__(
        self,
        *,
        port: Port,
        daemon: Daemon,
        config: Config,
        pin: PinFile,
        lockout: Lockout,
        recent_log: RecentLog,
        restart: Callable[[], None],
        settings: ConsoleSettings = ConsoleSettings(),
        version: str = "unknown",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.daemon = daemon
        self.config = config
        self.pin = pin
        self.lockout = lockout
        self.recent_log = recent_log
        self.restart = restart
        self.settings = settings
        self.version = version
        self.monotonic = monotonic
        self.editor = LineEditor()
        self.logged_in = False
        self._awaiting_pin = False
        self._last_input = monotonic()
        self._ids = itertools.count(1)
        self._stop = threading.Event()

    # -- output ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if data:
            self.port.write(data)

    def out(self, text: str = "") -> None:
        """Write lines; the terminal gets CR LF."""
        self.write((text.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n").encode())

    def prompt(self) -> None:
        if self._awaiting_pin:
            self.write(b"PIN: ")
            return
        mark = "#" if self.logged_in else ">"
        self.write(f"{self.config.station.id}{mark} ".encode())

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Serve the port until `stop()`."""
        self.out(f"\r\nev-terminal {self.version} diagnostics console. Type help.")
        self.prompt()
        while not self._stop.is_set():
            try:
                data = self.port.read(READ_CHUNK)
            except OSError as exc:  # pyserial's SerialException is an OSError
                log.error("event=console_port_error error=%s", exc)
                self._end_login("port_error")
                self._stop.wait(PORT_RETRY_S)
                continue
            if data:
                self._last_input = self.monotonic()
                self.feed(data)
            elif self.logged_in and self._idle():
                self._end_login("idle")
                self.out("\r\nlogged out: idle time-out")
                self.prompt()

    def _idle(self) -> bool:
        return self.monotonic() - self._last_input >= self.settings.idle_timeout_s

    def stop(self) -> None:
        self._stop.set()

    def feed(self, data: bytes) -> None:
        """Handle received bytes: echo, and run every completed line."""
        self.editor.secret = self._awaiting_pin
        echo, inputs = self.editor.feed(data)
        self.write(echo)
        for item in inputs:
            if isinstance(item, Interrupt):
                self._awaiting_pin = False
            elif isinstance(item, Line):
                if self._awaiting_pin:
                    self._awaiting_pin = False
                    self._check_pin(item.text)
                else:
                    self.execute(item.text)
            self.editor.secret = self._awaiting_pin
            self.prompt()

    def execute(self, text: str) -> None:
        words = text.split()
        if not words:
            return
        command, args = COMMANDS.find(words)
        if command is None:
            self.out(f"unknown command: {words[0]} (type help)")
            return
        if command.privileged and not self.logged_in:
            self.out(f"{command.name}: needs the technician PIN; type login first")
            return
        command.run(self, args)

    # -- the technician ----------------------------------------------------------------------
    def report(self, kind: str, detail: str) -> None:
        """Log a technician or security event and send it to the gateway via the machine."""
        log.info("event=%s %s", kind, detail)
        self.daemon.post(TechnicianActed(kind=kind, detail=detail, **self.daemon.stamp()))

    def begin_login(self) -> None:
        if self.logged_in:
            self.out("already logged in")
            return
        if not self.pin.is_set():
            self.out(
                "no technician PIN is set on this device "
                "(ev-terminal set-technician-pin --config ...)"
            )
            return
        left = self.lockout.remaining_s(self.daemon.clock.now())
        if left:
            self.out(f"locked out: too many wrong PINs; try again in {_minutes(left)}")
            self.report("security", f"login_refused locked_out remaining_s={left}")
            return
        self._awaiting_pin = True

    def _check_pin(self, pin: str) -> None:
        now = self.daemon.clock.now()
        if self.lockout.remaining_s(now):  # locked out meanwhile (another port, a restart)
            self.out("locked out: too many wrong PINs")
            return
        try:
            ok = self.pin.verify(pin)
        except KeyMaterialError as exc:
            log.error("event=technician_pin_unusable error=%s", exc)
            self.out("the technician PIN file is unusable; see the log")
            return
        if ok:
            self.lockout.succeeded()
            self.logged_in = True
            self.out("technician logged in")
            self.report("technician", "login")
            return
        left = self.lockout.failed(now)
        if left == 0:
            lock = self.lockout.policy.lockout_s
            self.out(f"wrong PIN; locked out for {_minutes(lock)}")
            self.report("security", f"lockout failures={self.lockout.policy.attempts}")
        else:
            self.out(f"wrong PIN ({left} {'try' if left == 1 else 'tries'} left)")
            self.report("security", f"login_failed tries_left={left}")

    def _end_login(self, reason: str) -> None:
        self._awaiting_pin = False
        if self.logged_in:
            self.logged_in = False
            self.report("technician", f"logout reason={reason}")

    def logout(self) -> None:
        if not self.logged_in:
            self.out("not logged in")
            return
        self._end_login("command")
        self.out("logged out")

    # -- device tests ------------------------------------------------------------------------
    def request(self, test: Diagnostic, *, window_s: float = 0.0) -> Reply | None:
        """Ask the daemon thread for a device test; wait for its answer (^C stops waiting).
        None if it did not answer in time or the technician cancelled."""
        request_id = f"console-{next(self._ids)}"
        self.daemon.post(
            DiagnosticRequested(
                request_id=request_id,
                test=test,
                window_ms=int(window_s * 1000),
                **self.daemon.stamp(),
            )
        )
        deadline = self.monotonic() + window_s + ANSWER_TIMEOUT_S
        answers = self.daemon.diagnostics.answers
        while self.monotonic() < deadline and not self._stop.is_set():
            reply = answers.wait(request_id, timeout=0.1)
            if reply is not None:
                return reply
            if CTRL_C in self.port.read(READ_CHUNK):
                self.out("^C")
                return None
        self.out("no answer from the kiosk")
        return None


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}:{seconds % 60:02d} min"
