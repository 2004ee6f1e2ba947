"""The daemon: one thread owns the machine's state; device threads only post events.

Threads (see docs/threads.md): the daemon thread (this loop: events, timers, executor), the
reader thread (polls the card reader, runs the card kernel and protection, posts
`CardPresented`/`CardUnreadable`), the vehicle thread (posts `VehicleStateChanged`) and the
sender thread (drains the outbox, posts `AuthorizationAnswered`). Each has a stop flag and a
bounded join.

The scripted simulator does not start threads: it calls `poll_devices`, `pump` and the
sender's `drain_once` itself, so a run is deterministic on a manual clock.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hardware.clock import Clock
from hardware.ports import DeviceFault, ReaderFault
from terminal.core.events import (
    CardPresented,
    CardProblem,
    CardUnreadable,
    Event,
    FaultCleared,
    FaultRaised,
    PoweredUp,
    Stamp,
    TimerFired,
    VehicleStateChanged,
)
from terminal.core.kiosk import Kiosk, Rules
from terminal.core.machine import step
from terminal.core.screens import screen_name
from terminal.core.session import Card
from terminal.shell.devices import Devices
from terminal.shell.executor import Executor, Timers
from terminal.shell.journal import Journal
from terminal.shell.uplink import Sender

log = logging.getLogger("ev_terminal.daemon")

Acquirer = Callable[[object], Card | CardProblem]
"""Reads a card target (kernel + protection) into a protected card, or says what went wrong."""

JOIN_TIMEOUT_S = 2.0
POLL_S = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A snapshot for the console and status reports (never card data)."""

    phase: str
    pilot: str
    contactor_closed: bool
    faults: tuple[str, ...]
    out_of_service: bool
    register_wh: int | None
    screen: str | None
    queue_depth: int
    oldest_unsent: str | None


class Daemon:
    def __init__(
        self,
        *,
        rules: Rules,
        devices: Devices,
        journal: Journal,
        sender_factory: Callable[[Callable[[Event], None]], Sender],
        clock: Clock,
        terminal_id: str,
        acquire: Acquirer,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.devices = devices
        self.journal = journal
        self.clock = clock
        self.acquire = acquire
        self.new_id = new_id
        self.kiosk = Kiosk(rules=rules)
        self.events: queue.Queue[Event] = queue.Queue()
        self.timers = Timers()
        self.sender = sender_factory(self.post)
        self.executor = Executor(
            devices=devices,
            journal=journal,
            clock=clock,
            timers=self.timers,
            terminal_id=terminal_id,
            station=rules.station,
            tariff_name=rules.tariff.name,
            post=self.post,
            wake_sender=self.sender.wake,
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reader_down = False

    # -- events ------------------------------------------------------------------------------
    def stamp(self) -> Stamp:
        return Stamp(at_ms=self.clock.monotonic_ms(), at=self.clock.now())

    def post(self, event: Event) -> None:
        """Thread-safe: any thread may post; only the daemon thread handles."""
        self.events.put(event)

    def handle(self, event: Event) -> None:
        kiosk, actions = step(self.kiosk, event)
        self.kiosk = kiosk
        self.executor.perform_all(actions, self._guarded)

    def _guarded(self, perform: Callable[[], None], action: object) -> bool:
        """Run one action; expected device errors become fault events, anything else fails
        safe (contactor open, fault event) and the daemon stays up. False if it failed."""
        try:
            perform()
        except DeviceFault as exc:
            log.error("event=device_fault action=%s error=%s", type(action).__name__, exc)
            self.post(FaultRaised(fault="device", **self.stamp()))
            return False
        except Exception:
            log.exception("event=internal_error action=%s", type(action).__name__)
            self._force_open()
            self.post(FaultRaised(fault="internal", **self.stamp()))
            return False
        return True

    def _force_open(self) -> None:
        try:
            self.devices.contactor.open()
        except Exception:
            log.exception("event=contactor_open_failed")

    # -- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the contactor before anything else, check the journal, then power up."""
        self._force_open()
        self.journal.check()
        try:
            register: int | None = self.devices.meter.read().energy_wh
        except DeviceFault as exc:
            log.error("event=meter_unavailable error=%s", exc)
            register = None
        unsettled = tuple(self.journal.unsettled())
        if unsettled:
            log.info("event=recovering sessions=%d", len(unsettled))
        self.post(PoweredUp(register_wh=register, unsettled=unsettled, **self.stamp()))

    # -- deterministic pumping (simulator, tests) --------------------------------------------
    def poll_devices(self) -> bool:
        """Poll every device once without blocking; True if anything was posted."""
        posted = False
        while (state := self.devices.vehicle.wait_change(0)) is not None:
            self.post(VehicleStateChanged(state=state, **self.stamp()))
            posted = True
        posted |= self._poll_reader(0)
        return posted

    def _poll_reader(self, timeout: float) -> bool:
        try:
            target = self.devices.reader.poll(timeout)
        except ReaderFault as exc:
            if not self._reader_down:
                self._reader_down = True
                log.error("event=reader_fault error=%s", exc)
                self.post(FaultRaised(fault="reader", **self.stamp()))
            return True
        if self._reader_down:
            self._reader_down = False
            self.post(FaultCleared(fault="reader", **self.stamp()))
        if target is None:
            return False
        result = self.acquire(target)
        if isinstance(result, CardProblem):
            self.post(CardUnreadable(problem=result, **self.stamp()))
        else:
            self.post(CardPresented(card=result, session_id=self.new_id(), **self.stamp()))
        return True

    def pump(self) -> int:
        """Handle every queued event and every due timer; return how many were handled."""
        handled = 0
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                timer = self.timers.pop_due(self.clock.monotonic_ms())
                if timer is None:
                    return handled
                event = TimerFired(timer=timer, **self.stamp())
            self.handle(event)
            handled += 1

    # -- the real loop -----------------------------------------------------------------------
    def run(self) -> None:
        """Run until `stop()`: device threads post, this thread handles."""
        self.start()
        self._spawn("reader", self._reader_loop)
        self._spawn("vehicle", self._vehicle_loop)
        self._spawn("sender", self.sender.run)
        while not self._stop.is_set():
            self.pump()
            if self.devices.watchdog is not None:
                self.devices.watchdog.kick()
            next_due = self.timers.next_due()
            wait_s = POLL_S if next_due is None else (next_due - self.clock.monotonic_ms()) / 1000
            try:
                event = self.events.get(timeout=min(max(wait_s, 0.0), POLL_S))
            except queue.Empty:
                continue
            self.handle(event)
        self._shutdown()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reader_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._poll_reader(POLL_S) and self._reader_down:
                    self._stop.wait(1.0)  # back off while the reader is down
            except Exception:
                log.exception("event=reader_thread_error")
                self._stop.wait(1.0)

    def _vehicle_loop(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.devices.vehicle.wait_change(POLL_S)
            except DeviceFault as exc:
                log.error("event=vehicle_link_fault error=%s", exc)
                self.post(FaultRaised(fault="vehicle_link", **self.stamp()))
                self._stop.wait(1.0)
                continue
            if state is not None:
                self.post(VehicleStateChanged(state=state, **self.stamp()))

    def stop(self) -> None:
        self._stop.set()
        self.devices.reader.close()
        self.sender.stop()

    def _shutdown(self) -> None:
        self._force_open()
        for thread in self._threads:
            thread.join(timeout=JOIN_TIMEOUT_S)
        if self.devices.watchdog is not None:
            self.devices.watchdog.stop()
        self.devices.contactor.release()

    def status(self) -> Status:
        depth, oldest = self.journal.queue_stats()
        k = self.kiosk
        screen = self.executor.screen
        return Status(
            phase=type(k.phase).__name__,
            pilot=k.pilot.value,
            contactor_closed=k.contactor_closed,
            faults=tuple(sorted(k.faults)),
            out_of_service=k.out_of_service,
            register_wh=k.register_wh,
            screen=screen_name(screen) if screen is not None else None,
            queue_depth=depth,
            oldest_unsent=oldest,
        )
