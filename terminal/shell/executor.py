"""The executor: performs the machine's actions, in order, against devices, journal and outbox.

Device failures become events (posted back to the daemon's queue); the machine decides what
they mean. A record is committed before any later action of the same step acts on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, assert_never

from hardware.clock import Clock
from hardware.ports import ContactorFault, MeterFault, VehicleLinkFault
from terminal.core.actions import (
    Action,
    Answer,
    AnswerStart,
    CancelTimer,
    Capture,
    CheckContactor,
    CloseContactor,
    OfferEnergy,
    OpenContactor,
    ReadMeter,
    Record,
    Report,
    RequestAuthorization,
    RequestIncrement,
    RequestLinkCode,
    RunDiagnostic,
    ShowScreen,
    StartTimer,
    TakeSignedReading,
    Void,
    WithdrawEnergy,
)
from terminal.core.bill_wire import bill_to_wire
from terminal.core.events import (
    ContactorChecked,
    Event,
    FaultRaised,
    MeterFailed,
    MeterSampled,
    Stamp,
    Timer,
)
from terminal.core.screens import Screen, frame_for, frames_for
from terminal.core.words import Words
from terminal.errors import JournalFull, KeyStateUnsaved
from terminal.shell.commands import queue_answer
from terminal.shell.devices import Devices
from terminal.shell.journal import JOURNAL_FULL, Journal
from terminal.shell.signed_readings import ReadingSigner

if TYPE_CHECKING:
    from terminal.ocpp.reporter import Reporter

log = logging.getLogger("ev_terminal.executor")

# The fault while the device cannot number what it protects or signs: its DUKPT keys are
# missing, damaged or exhausted (until re-provisioned), or its key state cannot be written
# (until a write succeeds again).
CARD_KEYS = "card_keys"


# Actions that only write the journal (a session row or an outbox row).
JOURNALED = (
    Record,
    RequestAuthorization,
    RequestIncrement,
    Capture,
    Void,
    Report,
    TakeSignedReading,
    AnswerStart,
)


# What may still be done in a step whose journal write failed: nothing that the lost record
# describes, only what makes the kiosk safe and tells the driver.
SAFE_WITHOUT_RECORD = (
    OpenContactor,
    WithdrawEnergy,
    ShowScreen,
    StartTimer,
    CancelTimer,
    CheckContactor,
)


class Timers:
    """Named one-shot timers on the monotonic clock; owned by the daemon thread."""

    def __init__(self) -> None:
        self.due: dict[Timer, int] = {}

    def start(self, timer: Timer, at_ms: int) -> None:
        self.due[timer] = at_ms

    def cancel(self, timer: Timer) -> None:
        self.due.pop(timer, None)

    def next_due(self) -> int | None:
        return min(self.due.values()) if self.due else None

    def pop_due(self, now_ms: int) -> Timer | None:
        """The earliest timer due at `now_ms`, removed; None if none is due."""
        if not self.due:
            return None
        timer = min(self.due, key=lambda t: self.due[t])
        if self.due[timer] > now_ms:
            return None
        del self.due[timer]
        return timer


class Executor:
    def __init__(
        self,
        *,
        devices: Devices,
        journal: Journal,
        clock: Clock,
        timers: Timers,
        terminal_id: str,
        station: str,
        tariff_name: str,
        post: Callable[[Event], None],
        wake_sender: Callable[[], None],
        diagnostics: Callable[[RunDiagnostic | Answer], None] | None = None,
        signer: ReadingSigner | None = None,
        reporter: Reporter | None = None,
        words: tuple[Words, tuple[Words, ...]] | None = None,
        ask_link_code: Callable[[str], None] | None = None,
    ) -> None:
        self.signer = signer
        # Hands a receipt's session to the sender for its link code (`shell/link_codes.py`);
        # None: no gateway to ask (the receipt shows no code).
        self.ask_link_code = ask_link_code
        self.reporter = reporter  # OCPP: sees records and settlements in the same commit
        # The station's language and every language the screens offer (None: English only).
        self.words = words
        self.station = station
        self.tariff_name = tariff_name
        self.devices = devices
        self.journal = journal
        self.clock = clock
        self.timers = timers
        self.terminal_id = terminal_id
        self.post = post
        self._wake_sender = wake_sender
        self._wake_pending = False
        self.diagnostics = diagnostics
        self.screen: Screen | None = None
        self.commanded_closed: bool | None = None  # the last contactor command carried out
        self.last_receipt: Any = None

    def _stamp(self) -> Stamp:
        return Stamp(at_ms=self.clock.monotonic_ms(), at=self.clock.now())

    def perform_all(
        self, actions: tuple[Action, ...], guard: Callable[[Callable[[], None], Action], bool]
    ) -> None:
        """Perform one step's actions in order. Consecutive journal writes share one
        transaction (one fsync), committed before the next action that acts outside the
        process (a relay, a reading, a screen) and before the sender is woken, so a record is
        on disk before what it describes is done or sent. `guard` runs one action and reports
        failure (it turns exceptions into fault events); a failed journal write rolls back its
        whole batch, and then nothing the batch describes is done: of the step's remaining
        actions only opening the contactor, screens and timers are."""
        batch: list[Action] = []
        written = True
        for action in actions:
            if isinstance(action, JOURNALED):
                batch.append(action)
                continue
            if batch and not isinstance(action, StartTimer | CancelTimer):
                written = self._write(batch, guard) and written
                batch = []
            if written or isinstance(action, SAFE_WITHOUT_RECORD):
                guard(partial(self.perform, action), action)
        if batch:
            self._write(batch, guard)
        if self._wake_pending:
            self._wake_pending = False
            self._wake_sender()

    def _write(
        self, batch: list[Action], guard: Callable[[Callable[[], None], Action], bool]
    ) -> bool:
        """One transaction for a batch of journal writes, every write and the commit guarded.
        A full disk (JournalFull) gives the reserve back to the file system and tries the
        batch once more, and raises the `journal_full` fault: the machine opens the contactor
        and settles from the reserve (see `reserve.py`). False if the batch was not written."""

        full = False

        def write() -> bool:
            nonlocal full
            self.journal.begin()
            try:
                for action in batch:
                    if not guard(partial(self.perform, action), action):
                        self.journal.rollback()
                        return False
                self.journal.commit()
            except JournalFull:
                full = True
                raise
            return True

        try:
            return self.journal.spend_reserve(write)
        except JournalFull as exc:
            self.journal.rollback()
            log.error("event=journal_write_failed error=%s actions=%d", exc, len(batch))
            return False
        finally:
            if full:
                self.post(FaultRaised(fault=JOURNAL_FULL, **self._stamp()))

    def _pilot(self, op: str, command: Callable[[], None]) -> None:
        """Offer or withdraw energy on the pilot. One the EVSE controller did not take is the
        fault `vehicle_link` (the machine then opens the contactor at once)."""
        try:
            command()
        except VehicleLinkFault as exc:
            log.error("event=pilot_fault op=%s error=%s", op, exc)
            self.post(FaultRaised(fault="vehicle_link", **self._stamp()))
        else:
            log.info("event=pilot_%s", op)

    def perform(self, action: Action) -> None:
        match action:
            case OpenContactor():
                self.commanded_closed = False
                try:
                    self.devices.contactor.open()
                except ContactorFault as exc:
                    log.error("event=contactor_fault op=open error=%s", exc)
                    self.post(FaultRaised(fault="contactor_output", **self._stamp()))
            case CloseContactor():
                self.commanded_closed = True
                try:
                    self.devices.contactor.close()
                except ContactorFault as exc:
                    log.error("event=contactor_fault op=close error=%s", exc)
                    self.post(FaultRaised(fault="contactor_output", **self._stamp()))
                log.info("event=contactor_closed")
            case OfferEnergy(current_a=current_a):
                self._pilot("offer", lambda: self.devices.vehicle.offer(current_a))
            case WithdrawEnergy():
                self._pilot("withdraw", self.devices.vehicle.withdraw)
            case CheckContactor():
                closed = self.devices.contactor.feedback_closed()
                self.post(
                    ContactorChecked(
                        closed=closed, commanded_closed=self.commanded_closed, **self._stamp()
                    )
                )
            case ReadMeter():
                try:
                    reading = self.devices.meter.read()
                except MeterFault as exc:
                    self.post(MeterFailed(reason=str(exc), **self._stamp()))
                else:
                    self.post(
                        MeterSampled(
                            energy_wh=reading.energy_wh,
                            power_w=reading.power_w,
                            current_ma=reading.current_ma,
                            **self._stamp(),
                        )
                    )
            case ShowScreen():
                self.screen = action.screen
                if self.words is None:
                    self.devices.display.show(frame_for(action.screen))
                else:
                    first, every = self.words
                    self.devices.display.show(frames_for(action.screen, first, every))
            case Record():
                self.journal.record(action.session, self.clock.now())
                if self.reporter is not None:
                    self.reporter.recorded(action.session)
                s = action.session
                log.info(
                    "event=session session=%s status=%s energy_wh=%s card=%s",
                    s.session_id,
                    s.status.value,
                    s.energy_wh,
                    s.card.masked(),
                )
            case RequestAuthorization():
                if self.reporter is not None and self.reporter.authorize(action):
                    return  # an RFID token the operator's CSMS authorizes (OCPP Authorize)
                card = action.card
                self.journal.enqueue(
                    lane=action.session_id,
                    kind="authorize",
                    idem_key=f"{action.session_id}:authorize",
                    path="/v1/authorizations",
                    body={
                        "authorization_id": action.session_id,
                        "terminal_id": self.terminal_id,
                        "amount": {
                            "minor": action.amount.minor,
                            "currency": action.amount.currency,
                        },
                        "card": {
                            "kind": card.kind.value,
                            "token": card.token,
                            "brand": card.brand,
                            "last4": card.last4,
                            "expiry": card.expiry,
                            "payload": dict(card.payload),
                        },
                    },
                    at=self.clock.now(),
                )
                self._wake_pending = True
            case RequestIncrement():
                sid = action.session_id
                self.journal.enqueue(
                    lane=sid,
                    kind="increment",
                    idem_key=f"{sid}:increment:{action.number}",
                    path=f"/v1/authorizations/{sid}/increment",
                    body={
                        "amount": {
                            "minor": action.amount.minor,
                            "currency": action.amount.currency,
                        },
                        "ceiling": {
                            "minor": action.ceiling.minor,
                            "currency": action.ceiling.currency,
                        },
                    },
                    at=self.clock.now(),
                )
                self._wake_pending = True
            case Capture():
                if self.reporter is not None and self.reporter.billed_by_csms(action.session_id):
                    self.reporter.settled_locally(action.session_id, action.bill)
                    self.journal.mark_acknowledged(action.session_id)
                    return
                session = self.journal_session(action.session_id)
                self.journal.enqueue(
                    lane=action.session_id,
                    kind="capture",
                    idem_key=f"{action.session_id}:capture",
                    path=f"/v1/authorizations/{action.session_id}/capture",
                    body={
                        "amount": {
                            "minor": action.amount.minor,
                            "currency": action.amount.currency,
                        },
                        "energy_wh": action.energy_wh,
                        "receipt": {
                            "receipt_id": action.receipt_id,
                            "currency": action.amount.currency,
                            "energy_wh": action.energy_wh,
                            **session,
                            **bill_to_wire(action.bill),
                        },
                    },
                    at=self.clock.now(),
                )
                if self.reporter is not None:
                    self.reporter.settled_locally(action.session_id, action.bill)
                self._wake_pending = True
            case Void():
                if self.reporter is not None and self.reporter.billed_by_csms(action.session_id):
                    self.reporter.settled_locally(action.session_id, None)
                    self.journal.mark_acknowledged(action.session_id)
                    return
                self.journal.enqueue(
                    lane=action.session_id,
                    kind="void",
                    idem_key=f"{action.session_id}:void",
                    path=f"/v1/authorizations/{action.session_id}/void",
                    body={"reason": action.reason[:64]},
                    at=self.clock.now(),
                )
                if self.reporter is not None:
                    self.reporter.settled_locally(action.session_id, None)
                self._wake_pending = True
            case StartTimer():
                self.timers.start(action.timer, self.clock.monotonic_ms() + action.after_ms)
            case CancelTimer():
                self.timers.cancel(action.timer)
            case Report():
                self.journal.enqueue_event(
                    terminal_id=self.terminal_id,
                    kind=action.kind,
                    detail=action.detail,
                    at=self.clock.now(),
                )
                log.info("event=%s detail=%s", action.kind, action.detail)
                if self.reporter is not None:
                    self.reporter.reported(action.kind, action.detail)  # OCPP security events
            case TakeSignedReading():
                self._signed_reading(action)
            case AnswerStart():
                queue_answer(
                    self.journal,
                    command_id=action.command_id,
                    session_id=action.session_id,
                    status="started" if action.started else "not_started",
                    reason=action.reason,
                    at=self.clock.now(),
                )
                log.info(
                    "event=web_start session=%s started=%s reason=%s",
                    action.session_id,
                    action.started,
                    action.reason,
                )
                self._wake_pending = True
            case RequestLinkCode():
                if self.ask_link_code is not None:
                    self.ask_link_code(action.session_id)
                    self._wake_pending = True
            case RunDiagnostic() | Answer():
                if self.diagnostics is None:
                    log.warning("event=diagnostics_unavailable action=%s", type(action).__name__)
                else:
                    self.diagnostics(action)
            case _:
                assert_never(action)

    def _signed_reading(self, action: TakeSignedReading) -> None:
        """Sign the reading (OCMF, the device key) and queue it in the batched "readings"
        lane; the idempotency key is fixed by the session and the kind, so a reading queued
        again after a restart is not sent twice."""
        if self.signer is None:
            log.warning("event=reading_unsigned session=%s kind=%s", action.session_id, action.kind)
            if self.reporter is not None:
                self.reporter.signed_reading(action, None)
            return
        row = self.journal.session_row(action.session_id)
        if row is None:
            raise KeyError(action.session_id)
        try:
            text = self.signer.sign(
                kind=action.kind,
                register_wh=action.register_wh,
                at=action.at,
                token=row["card_token"],
                tariff_text=row["tariff_name"] or self.tariff_name,
            )
        except KeyStateUnsaved as exc:
            # No pagination number could be reserved, so none is used: this reading is not
            # taken (the session still settles from the register), and the kiosk is out of
            # service until the counter can be written again (the daemon checks).
            log.error(
                "event=reading_not_signed session=%s kind=%s error=%s",
                action.session_id,
                action.kind,
                exc,
            )
            self.post(FaultRaised(fault=CARD_KEYS, **self._stamp()))
            return
        self.journal.enqueue(
            lane="readings",
            kind="reading",
            idem_key=f"{action.session_id}:reading:{action.kind}",
            path="/v1/meter-readings",
            body={
                "terminal_id": self.terminal_id,
                "reading": {"session_id": action.session_id, "kind": action.kind, "ocmf": text},
            },
            at=self.clock.now(),
        )
        if self.reporter is not None:
            self.reporter.signed_reading(action, text)
        self._wake_pending = True
        log.info("event=signed_reading session=%s kind=%s", action.session_id, action.kind)

    def journal_session(self, session_id: str) -> dict[str, Any]:
        """Receipt header fields from the station and the journaled session."""
        row = self.journal.session_row(session_id)
        if row is None:
            raise KeyError(session_id)
        brand, last4 = row["card_brand"], row["card_last4"]
        return {
            "station": self.station,
            "tariff": row["tariff_name"] or self.tariff_name,  # the one it started with
            "card": f"{brand} **** {last4}" if last4 else brand,
            "started_at": row["started_at"],
            "ended_at": row["ended_at"] or self.clock.now().isoformat(),
        }
