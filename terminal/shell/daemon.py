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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hardware.clock import Clock
from hardware.ports import DeviceFault, PilotState, ReaderFault
from terminal.core.actions import Void
from terminal.core.events import (
    CardPresented,
    CardProblem,
    CardUnreadable,
    ContactorChecked,
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
from terminal.core.session import Card, CardKind, LocalStanding
from terminal.core.words import Words
from terminal.errors import JournalFull, KeyMaterialError, KeyStateUnsaved
from terminal.shell.commands import CommandChannel, Offer
from terminal.shell.devices import Devices
from terminal.shell.diagnostics import Diagnostics
from terminal.shell.executor import CARD_KEYS, Executor, Timers
from terminal.shell.journal import JOURNAL_FULL, RESERVE_PAGES, Journal
from terminal.shell.journal_damage import JOURNAL_DAMAGED
from terminal.shell.link_codes import LinkCodeAsker
from terminal.shell.local_lists import LocalLists
from terminal.shell.notify import Notifier
from terminal.shell.sender import Sender
from terminal.shell.signed_readings import ReadingSigner
from terminal.shell.tariffs import TariffBook
from terminal.version import software_version

if TYPE_CHECKING:
    from terminal.ocpp.client import OcppClient
    from terminal.ocpp.reporter import Reporter

log = logging.getLogger("ev_terminal.daemon")

Acquirer = Callable[[object, bool], Card | CardProblem]
"""Reads a card target (kernel + protection) into a protected card, or says what went wrong;
told whether a session could start from the tap (else it returns the token alone and uses no
DUKPT key: a stop tap, another card during a session, a tap while out of service). Raises
KeyMaterialError when the device cannot protect cards (a device fault)."""

JOIN_TIMEOUT_S = 2.0
POLL_S = 0.1
ROOM_CHECK_MS = 10_000  # how often the journal's free space is looked at
WATCHDOG_FAULT = "watchdog"  # the hardware watchdog could not be armed or kicked
READER_FAULT = "reader"  # the card reader stopped answering (raised and cleared by `_poll_reader`)


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
    queue_depth: int  # unsent outbox rows of every kind
    oldest_unsent: str | None  # when the oldest unsent row was written (ISO 8601)
    feedback_closed: bool | None = None  # the contactor's feedback at its last check
    reader_ok: bool = True
    gateway_reachable: bool | None = None  # None: not contacted yet
    uptime_s: int = 0
    oldest_unsent_age_s: int | None = None  # how long the oldest unsent row has waited


def could_start_session(kiosk: Kiosk) -> bool:
    """Whether a card the reader thread has just read could start a session, judged on the
    kiosk as that thread last saw it (the daemon thread may not have handled every event
    posted before the card yet).

    The reader's own fault does not count: only the reader thread raises and clears it, a
    card it has just read shows the reader answers, and the `FaultCleared` it posted when the
    reader came back is ahead of the card in the queue. Counted, it made a card that waited
    on the reader while the reader was opened again after a fault read for its token alone,
    and the machine, back in service by the time the card arrived, could start nothing from
    it ("tap again", and the card still on the reader was never read again)."""
    faults = kiosk.faults - {READER_FAULT}
    return kiosk.session is None and not faults and not kiosk.out_of_service


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
        notifier: Notifier | None = None,
        signer: ReadingSigner | None = None,
        lists: LocalLists | None = None,
        words: tuple[Words, tuple[Words, ...]] | None = None,
        key_problem: str | None = None,
        keys_unsaved: str | None = None,
        check_key_stores: Callable[[], None] | None = None,
        offer: Offer | None = None,
        journal_damage: str | None = None,
        tariffs: TariffBook | None = None,
    ) -> None:
        self.tariffs = tariffs  # a session settled after a restart keeps its tariff
        self.devices = devices
        self._key_problem = key_problem
        # The key state could not be written at start (KeyStateUnsaved): a fault that clears
        # once `check_key_stores` (which writes every key store again, using nothing) succeeds.
        self._keys_unsaved = keys_unsaved
        self.check_key_stores = check_key_stores
        # Taps (the reader thread) and that check (the daemon thread) write the same stores.
        self._keys_lock = threading.Lock()
        self._journal_damage = journal_damage
        self.lists = lists
        self.journal = journal
        self.clock = clock
        self.acquire = acquire
        self.new_id = new_id
        self.kiosk = Kiosk(rules=rules)
        self.events: queue.Queue[Event] = queue.Queue()
        self.timers = Timers()
        # True while the daemon thread handles an event: a harness that moves a simulated
        # clock waits for it, so an event is handled at the time it was stamped with.
        self.handling = False
        self.sender = sender_factory(self.post)
        self.software_version = software_version()
        self.sender.status_source = self.wire_status
        # A receipt's link code, asked for on the sender's thread after its outbox round.
        self.link_codes = LinkCodeAsker(
            self.sender.client, clock, self.post, terminal_id=terminal_id
        )
        self.sender.after_round = self.link_codes.send_due
        self.diagnostics = Diagnostics(
            devices=devices,
            journal=journal,
            clock=clock,
            post=self.post,
            reader_ok=lambda: not self._reader_down,
            gateway_reachable=lambda: self.sender.reachable,
        )
        self.notifier = notifier
        # The gateway's commands (pay by phone): a long poll on a connection of its own.
        self.commands = CommandChannel(
            journal,
            self.sender.client.fork(),
            clock,
            self.post,
            terminal_id=terminal_id,
            offer=offer,
        )
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
            diagnostics=self.diagnostics.perform,
            signer=signer,
            words=words,
            ask_link_code=self.link_codes.want,
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reader_down = False
        self._keys_broken = False
        self._keys_raised = False  # a FaultRaised(card_keys) posted by this daemon stands
        self._feedback_closed: bool | None = None
        self._started_ms: int | None = None
        self._next_ping = 0.0
        self._next_room_check = 0
        self._watchdog_armed = False
        self.reporter: Reporter | None = None
        self.ocpp: OcppClient | None = None

    def attach_ocpp(self, reporter: Reporter, client: OcppClient) -> None:
        """Join an OCPP 2.1 network: the reporter sees the executor's records and the
        sender's settlements in their own commits, and each step's outcome; the client
        thread starts with the daemon's."""
        self.reporter = reporter
        self.ocpp = client
        self.executor.reporter = reporter
        self.sender.on_settlement = reporter.gateway_settled

    # -- events ------------------------------------------------------------------------------
    def stamp(self) -> Stamp:
        return Stamp(at_ms=self.clock.monotonic_ms(), at=self.clock.now())

    def post(self, event: Event) -> None:
        """Thread-safe: any thread may post; only the daemon thread handles."""
        self.events.put(event)

    def handle(self, event: Event) -> None:
        self.handling = True
        try:
            self._handle(event)
        finally:
            self.handling = False

    def _handle(self, event: Event) -> None:
        if (
            isinstance(event, CardPresented)
            and event.card.kind is CardKind.PAYMENT
            and not event.card.payload
            and self.kiosk.session is None
            and self.kiosk.available
        ):
            # Read as a stop tap (token only) while a session was running, handled after it
            # ended: no session starts without its card data. The driver taps again.
            event = CardUnreadable(problem=CardProblem.TAP_AGAIN, at_ms=event.at_ms, at=event.at)
        if isinstance(event, ContactorChecked):
            self._feedback_closed = event.closed
        kiosk, actions = step(self.kiosk, event)
        self.kiosk = kiosk
        self.executor.perform_all(actions, self._guarded)
        if self.reporter is not None:
            try:
                self.reporter.observe(self.kiosk, event)
            except Exception:
                log.exception("event=ocpp_report_error")

    def _guarded(self, perform: Callable[[], None], action: object) -> bool:
        """Run one action; expected device errors become fault events, anything else fails
        safe (contactor open, fault event) and the daemon stays up. False if it failed."""
        try:
            perform()
        except DeviceFault as exc:
            log.error("event=device_fault action=%s error=%s", type(action).__name__, exc)
            self.post(FaultRaised(fault="device", **self.stamp()))
            return False
        except JournalFull:
            raise  # the executor's journal batch gives the reserve back and tries again
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
        self._started_ms = self.clock.monotonic_ms()
        self.journal.check()
        self.journal.spend_reserve(self.journal.forget_card_data)  # blobs left by a crash
        if self.reporter is not None:
            self.reporter.flush_waiting_ends()
        orphans = self.journal.orphan_holds()
        if orphans:
            # A hold asked for by a session the journal no longer has (or gave up): release it.
            log.warning("event=orphan_holds count=%d", len(orphans))
            self.executor.perform_all(
                tuple(Void(session_id=lane, reason="orphaned_hold") for lane in orphans),
                self._guarded,
            )
        try:
            register: int | None = self.devices.meter.read().energy_wh
        except DeviceFault as exc:
            log.error("event=meter_unavailable error=%s", exc)
            register = None
        unsettled = tuple(self.journal.unsettled())
        if self.tariffs is not None:
            book = self.tariffs
            unsettled = tuple(replace(s, tariff=book.get(s.tariff_key)) for s in unsettled)
        if unsettled:
            log.info("event=recovering sessions=%d", len(unsettled))
        self.post(PoweredUp(register_wh=register, unsettled=unsettled, **self.stamp()))
        # Commands journaled but not acted on before a restart: the machine decides again.
        self.commands.replay()
        if self._key_problem is not None:
            self._keys_fault(self._key_problem)
        elif self._keys_unsaved is not None:
            self._keys_fault(self._keys_unsaved, lasting=False)
        if self._journal_damage is not None:
            # Out of service until the sender has released the holds the journal lost.
            self.post(FaultRaised(fault=JOURNAL_DAMAGED, **self.stamp()))
        # A vehicle already plugged in at start-up is no change to its link: say where it is.
        try:
            pilot = self.devices.vehicle.state()
        except DeviceFault as exc:
            log.error("event=vehicle_link_fault error=%s", exc)
            self.post(FaultRaised(fault="vehicle_link", **self.stamp()))
        else:
            if pilot is not PilotState.A:
                self.post(VehicleStateChanged(state=pilot, **self.stamp()))

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
            return self._reader_failed(exc)
        if self._reader_down:
            self._reader_down = False
            self.post(FaultCleared(fault=READER_FAULT, **self.stamp()))
        if target is None:
            self.diagnostics.reader_idle()
            return False
        kiosk = self.kiosk  # a snapshot: the daemon thread replaces it, never mutates it
        try:
            with self._keys_lock:
                result = self.acquire(target, could_start_session(kiosk))
        except KeyMaterialError as exc:
            self._keys_fault(str(exc), lasting=not isinstance(exc, KeyStateUnsaved))
            return True
        except ReaderFault as exc:
            # The reader failed in the middle of the read (the kernel lets nothing else of the
            # reader's through): the same fault as from `poll`. A card that stays is read again
            # once the reader answers: its read never finished, so the driver returns it.
            return self._reader_failed(exc)
        if self.diagnostics.reader_test_armed():
            self.diagnostics.card_seen(result)  # a reader test takes the card: no session
            return True
        if isinstance(result, CardProblem):
            self.post(CardUnreadable(problem=result, **self.stamp()))
        else:
            standing = self._standing(result)
            self.post(
                CardPresented(
                    card=result, session_id=self.new_id(), standing=standing, **self.stamp()
                )
            )
        return True

    def _reader_failed(self, exc: ReaderFault) -> bool:
        """The reader stopped answering: the fault is raised once, when it goes down. True if
        that was posted now (a caller pumping until nothing happens must stop while it stays
        down)."""
        if self._reader_down:
            return False
        self._reader_down = True
        log.error("event=reader_fault error=%s", exc)
        self.post(FaultRaised(fault=READER_FAULT, **self.stamp()))
        return True

    def _keys_fault(self, problem: str, *, lasting: bool = True) -> None:
        """The device cannot protect cards: a fault (out of service, console, an event to the
        gateway), raised once. Keys missing, damaged or exhausted (`lasting`) keep it until
        they are re-provisioned and the daemon restarted; key state that could not be written
        (a full disk) keeps it only until the stores can be written again (`_check_keys`)."""
        log.error("event=card_keys_fault lasting=%s error=%s", lasting, problem)
        if lasting:
            self._keys_broken = True
        if CARD_KEYS not in self.kiosk.faults and not self._keys_raised:
            self._keys_raised = True
            self.post(FaultRaised(fault=CARD_KEYS, **self.stamp()))

    def _check_keys(self) -> None:
        """While `card_keys` stands for key state that could not be written (raised here, or
        by the executor when a reading's number could not be reserved), write every store
        again; once that succeeds the fault clears. Nothing is numbered or used by it."""
        if CARD_KEYS not in self.kiosk.faults or self._keys_broken:
            return
        if self.check_key_stores is None:
            return
        try:
            with self._keys_lock:
                self.check_key_stores()
        except KeyStateUnsaved as exc:
            log.warning("event=card_keys_unsaved error=%s", exc)
            return
        except KeyMaterialError as exc:
            self._keys_fault(str(exc))
            return
        log.info("event=card_keys_saved")
        self._keys_raised = False
        self.post(FaultCleared(fault=CARD_KEYS, **self.stamp()))

    def _standing(self, card: Card) -> LocalStanding:
        """The local facts for an offline decision; none (online only) if they cannot be
        read: a broken journal must not start a session the policy would not allow."""
        try:
            standing = (
                self.lists.standing(card, self.journal)
                if self.lists is not None
                else LocalStanding()
            )
            if self.reporter is not None:
                standing = self.reporter.standing(card, standing)  # the CSMS's local list
        except Exception:
            log.exception("event=standing_unavailable")
            return LocalStanding()
        return standing

    def pump(self) -> int:
        """Handle every queued event and every due timer; return how many were handled."""
        self._check_room()
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
        self._spawn("commands", self.commands.run)
        if self.ocpp is not None:
            self.ocpp.start()
        self.pump()  # PoweredUp: the machine opens the contactor again and shows the idle screen
        self._arm_watchdog()  # last before READY: start-up time never counts against it
        if self.notifier is not None:
            self.notifier.ready(self.status_line())
        while not self._stop.is_set():
            self.pump()
            self._kick_watchdog()
            self._supervise()
            next_due = self.timers.next_due()
            wait_s = POLL_S if next_due is None else (next_due - self.clock.monotonic_ms()) / 1000
            try:
                event = self.events.get(timeout=min(max(wait_s, 0.0), POLL_S))
            except queue.Empty:
                continue
            self.handle(event)
        self._shutdown()

    def _arm_watchdog(self) -> None:
        """Arm the hardware watchdog. One that cannot be armed is a fault (no charging without
        the layer that resets a hung Pi), but the daemon stays up for diagnosis."""
        watchdog = self.devices.watchdog
        if watchdog is None:
            return
        try:
            watchdog.arm()
        except DeviceFault as exc:
            log.error("event=watchdog_unavailable error=%s", exc)
            self._watchdog_armed = False
            self.post(FaultRaised(fault=WATCHDOG_FAULT, **self.stamp()))
            return
        self._watchdog_armed = True
        log.info("event=watchdog_armed timeout_s=%s", getattr(watchdog, "timeout_s", None))

    def _kick_watchdog(self) -> None:
        watchdog = self.devices.watchdog
        if watchdog is None or not self._watchdog_armed:
            return
        try:
            watchdog.kick()
        except DeviceFault as exc:
            # No more kicks: the board resets when the timer runs out, which is the safe end.
            log.error("event=watchdog_kick_failed error=%s", exc)
            self._watchdog_armed = False
            self.post(FaultRaised(fault=WATCHDOG_FAULT, **self.stamp()))

    def _check_room(self) -> None:
        """A full disk stops new sessions, never settling. The fault `journal_full` takes the
        kiosk out of service (the machine ends the running session and settles it from the
        reserve) while the reserve file is gone (a write found the disk full and gave it back,
        `reserve.py`) or the journal has fewer than RESERVE_PAGES pages to grow into (after
        dropping finished outbox rows); it clears by itself once the reserve could be made
        again and there is twice RESERVE_PAGES besides."""
        now = self.clock.monotonic_ms()
        if now < self._next_room_check:
            return
        self._next_room_check = now + ROOM_CHECK_MS
        try:
            free = self.journal.free_pages()
            if free < RESERVE_PAGES:
                log.warning("event=journal_low free_pages=%d", free)
                self.journal.spend_reserve(self.journal.reclaim)
                free = self.journal.free_pages()
        except JournalFull:
            free = 0
        try:
            reserve = self.journal.reserve.ensure()
        except OSError as exc:
            log.error("event=reserve_unavailable error=%s", exc)
            reserve = False
        full = JOURNAL_FULL in self.kiosk.faults
        if (not reserve or free < RESERVE_PAGES) and not full:
            log.error("event=journal_full reserve=%s free_pages=%d", reserve, free)
            self.post(FaultRaised(fault=JOURNAL_FULL, **self.stamp()))
        elif reserve and free >= 2 * RESERVE_PAGES and full:
            log.info("event=journal_room_back free_pages=%d", free)
            self.post(FaultCleared(fault=JOURNAL_FULL, **self.stamp()))
        self._check_keys()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reader_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_reader(POLL_S)
                if self._reader_down:
                    self._stop.wait(1.0)  # back off while the reader is down
            except Exception:
                log.exception("event=reader_thread_error")
                self._stop.wait(1.0)

    def _vehicle_loop(self) -> None:
        link_down = False
        while not self._stop.is_set():
            try:
                state = self.devices.vehicle.wait_change(POLL_S)
                if link_down:
                    # Back: clear the fault and say where the pilot is now (it may have moved).
                    current = self.devices.vehicle.state()
                    link_down = False
                    log.info("event=vehicle_link_recovered")
                    self.post(FaultCleared(fault="vehicle_link", **self.stamp()))
                    self.post(VehicleStateChanged(state=state or current, **self.stamp()))
                    continue
            except DeviceFault as exc:
                if not link_down:
                    link_down = True
                    log.error("event=vehicle_link_fault error=%s", exc)
                    self.post(FaultRaised(fault="vehicle_link", **self.stamp()))
                self._stop.wait(1.0)
                continue
            if state is not None:
                self.post(VehicleStateChanged(state=state, **self.stamp()))

    def _supervise(self) -> None:
        """systemd: STATUS= when it changes; WATCHDOG=1 from this loop only, so a stuck loop
        stops the pings and systemd restarts the service (which opens the contactor first)."""
        notifier = self.notifier
        if notifier is None:
            return
        notifier.status(self.status_line())
        interval = notifier.watchdog_interval_s
        now = time.monotonic()
        if interval is not None and now >= self._next_ping:
            notifier.watchdog()
            self._next_ping = now + interval

    def status_line(self) -> str:
        """One line for `systemctl status`: phase, pilot, contactor, faults."""
        k = self.kiosk
        line = (
            f"{type(k.phase).__name__.lower()}; pilot {k.pilot.value}; "
            f"contactor {'closed' if k.contactor_closed else 'open'}"
        )
        if k.faults:
            line += "; faults " + ",".join(sorted(k.faults))
        if k.out_of_service:
            line += "; out of service"
        return line

    def stop(self) -> None:
        self._stop.set()
        self.devices.reader.close()
        self.sender.stop()
        self.commands.stop()

    def _shutdown(self) -> None:
        self._force_open()
        if self.ocpp is not None:
            self.ocpp.stop(JOIN_TIMEOUT_S)
        for thread in self._threads:
            thread.join(timeout=JOIN_TIMEOUT_S)
        if self.devices.watchdog is not None and self._watchdog_armed:
            self.devices.watchdog.stop()
        self.devices.contactor.release()
        if self.notifier is not None:
            self.notifier.stopping()
            self.notifier.close()

    def wire_status(self) -> dict[str, Any]:
        """The status the sender reports to the gateway (`wire.TerminalStatus`): software
        version, outbox depth and age, the session under way with its energy and cost so far
        (never card data)."""
        status = self.status()
        session = self.kiosk.session
        sessions = []
        if session is not None:
            progress: dict[str, Any] = {
                "session_id": session.session_id,
                "energy_wh": session.energy_wh,
            }
            if session.amount is not None:
                progress["cost"] = {
                    "minor": session.amount.minor,
                    "currency": session.amount.currency,
                }
            sessions.append(progress)
        return {
            "software_version": self.software_version,
            "queue_depth": status.queue_depth,
            "oldest_unsent_s": (
                None if status.oldest_unsent_age_s is None else max(0, status.oldest_unsent_age_s)
            ),
            "sessions": sessions,
            "at": self.clock.now().isoformat(),
        }

    def status(self) -> Status:
        depth, oldest = self.journal.queue_stats()
        age = (
            int((self.clock.now() - datetime.fromisoformat(oldest)).total_seconds())
            if oldest is not None
            else None
        )
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
            feedback_closed=self._feedback_closed,
            reader_ok=not self._reader_down,
            gateway_reachable=self.sender.reachable,
            oldest_unsent_age_s=age,
            uptime_s=(
                (self.clock.monotonic_ms() - self._started_ms) // 1000
                if self._started_ms is not None
                else 0
            ),
        )
