"""The session state machine: `step(kiosk, event) -> (kiosk, actions)`.

Pure: no I/O, no clock reads, no randomness. Every (phase, event) pair is either a transition
in `TRANSITIONS` or listed by name in `IGNORED`; a test checks the table is total, and the state
diagram in docs/state-machine.md is generated from it.

Safety rules enforced here (and checked by property tests):
- the contactor is closed only while a session is authorized, the vehicle asks for energy
  (IEC 61851-1 state C/D) and no fault is active; any fault opens it first;
- a feedback contact reading "closed" while commanded open is a welded contactor: a fault;
- the running cost never exceeds the authorized amount: charging stops when the next meter
  sample would exceed it (time-based components counted ahead); where increments are
  configured, the hold is topped up first, and only an approved answer raises the cap;
- captured <= authorized; a session with no energy (or nothing to pay) is voided;
- every approved hold ends in exactly one `Capture` or one `Void`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from hardware.ports import PilotState
from terminal.core import screens
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
from terminal.core.billing import Tariff, limit_to
from terminal.core.current import offered_current
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    CardPresented,
    CardProblem,
    CardUnreadable,
    ContactorChecked,
    CostLimitSet,
    CurrentLimited,
    Diagnostic,
    DiagnosticFinished,
    DiagnosticRequested,
    Event,
    FaultCleared,
    FaultRaised,
    IncrementAnswered,
    LinkCodeIssued,
    MeterFailed,
    MeterSampled,
    OutOfServiceChanged,
    PayCodeChanged,
    PoweredUp,
    SignedReadingRequested,
    StopRequested,
    TariffChanged,
    TechnicianActed,
    Timer,
    TimerFired,
    VehicleStateChanged,
    WebPaymentAuthorized,
    WebPaymentStarted,
)
from terminal.core.kiosk import (
    PHASE_TYPES,
    Authorizing,
    AwaitingVehicle,
    Booting,
    Charging,
    Finishing,
    Idle,
    Kiosk,
    Receipt,
    Suspended,
    Unavailable,
)
from terminal.core.session import Card, CardKind, LocalStanding, Session, Status
from terminal.money import Money

Result = tuple[Kiosk, tuple[Action, ...]]
Handler = Callable[[Kiosk, Event], Result]

PILOT_FAULT = "pilot_error"  # control pilot in state E or F
WELDED = "contactor_welded"
FAILED_TO_CLOSE = "contactor_failed_to_close"
METER_FAULT = "meter"
MS_PER_HOUR = 3_600_000  # W * ms per Wh


# -- helpers: pure functions of the state ------------------------------------------------------


def _idle_screen(k: Kiosk, at: datetime) -> screens.Screen:
    if not k.available:
        return screens.Unavailable(reasons=tuple(sorted(k.faults)) or ("out_of_service",))
    if k.web_payment:
        return screens.WebPayment()
    return screens.Idle(
        price=k.rules.tariff.price_phrases(at),
        connected=k.pilot.connected,
        pay_url=k.pay_url or "",
    )


def _tariff(k: Kiosk, session: Session) -> Tariff:
    """The tariff a session is priced by: the one it started with."""
    return session.tariff or k.rules.tariff


def _rest(k: Kiosk, at: datetime, *extra: Action) -> Result:
    """Back to Idle, or Unavailable when faulted / out of service."""
    phase = Idle() if k.available else Unavailable()
    return replace(k, phase=phase), (*extra, ShowScreen(screen=_idle_screen(k, at)))


def _open(k: Kiosk) -> tuple[Kiosk, tuple[Action, ...]]:
    return replace(k, contactor_closed=False), (
        OpenContactor(),
        StartTimer(timer=Timer.CONTACTOR_CHECK, after_ms=k.rules.contactor_check_ms),
    )


def _notice(k: Kiosk, kind: str, *extra: Action) -> Result:
    return k, (
        *extra,
        ShowScreen(screen=screens.Notice(kind=kind)),
        StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
    )


def _cost(session: Session) -> Money:
    assert session.meterage is not None
    cap = session.authorized or session.hold
    return session.meterage.total().min(cap)


def _charging_screen(session: Session, e: Event, power_w: int) -> screens.Screen:
    assert session.authorized is not None
    started = session.charging_started_at or e.at
    return screens.Charging(
        energy_wh=session.energy_wh,
        cost=_cost(session),
        cap=session.authorized,
        power_w=power_w,
        elapsed_s=int((e.at - started).total_seconds()),
    )


def receipt_id_for(session_id: str) -> str:
    """A short receipt id for the driver (QR, portal), derived from the session id: 16
    base32 characters of SHA-256, so two sessions never share one in practice (80 bits)."""
    digest = hashlib.sha256(session_id.encode()).digest()[:10]
    return base64.b32encode(digest).decode()


def _settle(k: Kiosk, session: Session, e: Event) -> Result:
    """Decide the one capture or void for `session` and show the receipt."""
    amount = _cost(session) if session.meterage is not None else Money.zero(session.currency)
    receipt_id = receipt_id_for(session.session_id)
    actions: list[Action]
    if session.energy_wh <= 0 or amount.minor <= 0:
        session = replace(session, status=Status.VOIDING, amount=Money.zero(session.currency))
        actions = [
            Record(session=session),
            Void(session_id=session.session_id, reason=session.end_reason or "no_energy"),
        ]
        bill = None
    else:
        assert session.meterage is not None
        # The receipt totals what is captured: a bill over the cap gets a LIMIT line.
        bill = limit_to(session.meterage.bill(), amount)
        session = replace(session, status=Status.CAPTURING, amount=amount)
        actions = [
            Record(session=session),
            Capture(
                session_id=session.session_id,
                amount=amount,
                energy_wh=session.energy_wh,
                bill=bill,
                receipt_id=receipt_id,
            ),
        ]
    if session.charging_started_at is not None and session.start_register_wh is not None:
        # OCMF "E": the register the bill was made from (begin + the energy billed).
        actions.append(
            TakeSignedReading(
                session_id=session.session_id,
                kind="end",
                register_wh=session.start_register_wh + session.energy_wh,
                at=session.ended_at or e.at,
            )
        )
    receipt = screens.Receipt(
        receipt_id=receipt_id,
        url=f"{k.rules.receipt_url.rstrip('/')}/{receipt_id}",
        station=k.rules.station,
        tariff=_tariff(k, session).name,
        card=session.card.masked(),
        started_at=session.started_at.isoformat(),
        ended_at=(session.ended_at or e.at).isoformat(),
        energy_wh=session.energy_wh,
        bill=bill,
        total=session.amount or Money.zero(session.currency),
        end_reason=session.end_reason or "",
    )
    actions += [
        CancelTimer(timer=Timer.SUSPENDED),
        ShowScreen(screen=receipt),
        StartTimer(timer=Timer.RECEIPT, after_ms=k.rules.receipt_ms),
    ]
    if session.card.kind in _LINKABLE:
        # The tap proved the card is at hand: a code on the receipt links it to the
        # driver's account on the portal (`LinkCodeIssued`).
        actions.append(RequestLinkCode(session_id=session.session_id))
    return replace(k, phase=Receipt(session=session, shown=receipt)), tuple(actions)


_LINKABLE = (CardKind.PAYMENT, CardKind.ID_TOKEN)  # a web payment has no card to link


def _link_code_issued(k: Kiosk, e: Event) -> Result:
    """The receipt of the session the code is for shows it; anywhere else it came too late
    (the next session or the idle screen began) and is dropped."""
    assert isinstance(e, LinkCodeIssued)
    phase = k.phase
    if (
        not isinstance(phase, Receipt)
        or phase.shown is None
        or phase.session.session_id != e.session_id
        or e.valid_ms <= 0
    ):
        return k, ()
    shown = replace(phase.shown, link_code=e.code)
    return replace(k, phase=replace(phase, shown=shown)), (ShowScreen(screen=shown),)


def _abandon(k: Kiosk, session: Session, reason: str) -> tuple[Session, tuple[Action, ...]]:
    """Give up a hold that never saw energy: record, then queue the void."""
    session = replace(
        session, status=Status.VOIDING, end_reason=reason, amount=Money.zero(session.currency)
    )
    return session, (
        WithdrawEnergy(),
        Record(session=session),
        Void(session_id=session.session_id, reason=reason),
        CancelTimer(timer=Timer.AUTHORIZATION),
        CancelTimer(timer=Timer.PLUG_IN),
    )


def _stop(k: Kiosk, session: Session, e: Event, reason: str) -> Result:
    """End a session that may have delivered energy: contactor open first, then the final
    reading (unless the meter is what failed), then settle."""
    k, opened = _open(k)
    session = replace(session, status=Status.FINISHING, end_reason=reason, ended_at=e.at)
    actions: tuple[Action, ...] = (
        *opened,
        WithdrawEnergy(),
        CancelTimer(timer=Timer.SUSPENDED),
        CancelTimer(timer=Timer.PILOT_RELEASE),
        Record(session=session),
    )
    if reason == METER_FAULT:
        # The meter failed: settle on the last good reading; energy is never guessed.
        k2, settle = _settle(k, session, e)
        return k2, actions + settle
    return replace(k, phase=Finishing(session=session)), (
        *actions,
        ShowScreen(screen=screens.Stopping(reason=reason)),
        ReadMeter(),
    )


def _release(k: Kiosk, session: Session, e: Event, reason: str) -> Result:
    """End a session normally: with energy flowing, the PWM goes off first and the contactor
    opens when the vehicle has ended the load (C→B) or `pilot_release_ms` has passed
    (IEC 61851-1 Annex A); otherwise (or with a pilot the kiosk only reads) at once. Faults
    never come here: they open at once."""
    if not (k.rules.pwm_control and k.contactor_closed and k.pilot.wants_energy):
        return _stop(k, session, e, reason)
    return replace(k, phase=Charging(session=session, stopping=reason)), (
        WithdrawEnergy(),
        StartTimer(timer=Timer.PILOT_RELEASE, after_ms=k.rules.pilot_release_ms),
        ShowScreen(screen=screens.Stopping(reason=reason)),
    )


def _released(k: Kiosk, e: Event) -> Result:
    """The vehicle did not leave C in time: open anyway, and say so."""
    assert isinstance(k.phase, Charging) and k.phase.stopping is not None
    reason = k.phase.stopping
    k2, acts = _stop(k, k.phase.session, e, reason)
    return k2, (*acts, Report(kind="pilot_release_timeout", detail=reason))


def _begin_charging(k: Kiosk, session: Session, e: Event) -> Result:
    """Close the contactor (the caller has checked authorization, pilot C/D and no fault)."""
    assert session.authorized is not None and not k.faults
    begin: tuple[Action, ...] = ()
    if session.meterage is None:
        session = replace(
            session,
            meterage=_tariff(k, session).begin(e.at),
            charging_started_at=e.at,
            last_sample_at=e.at,
            last_sample_ms=e.at_ms,
        )
        if session.start_register_wh is not None:
            # OCMF "B": the register the session's energy is counted from.
            begin = (
                TakeSignedReading(
                    session_id=session.session_id,
                    kind="begin",
                    register_wh=session.start_register_wh,
                    at=e.at,
                ),
            )
    session = replace(session, status=Status.CHARGING)
    k = replace(k, contactor_closed=True, phase=Charging(session=session))
    return k, (
        CancelTimer(timer=Timer.PLUG_IN),
        CancelTimer(timer=Timer.SUSPENDED),
        Record(session=session),
        *begin,
        CloseContactor(),
        StartTimer(timer=Timer.CONTACTOR_CHECK, after_ms=k.rules.contactor_check_ms),
        ShowScreen(screen=_charging_screen(session, e, 0)),
    )


def _may_charge(k: Kiosk) -> bool:
    return k.pilot.wants_energy and not k.faults


def _fold_sample(session: Session, e: MeterSampled, k: Kiosk, *, charging: bool) -> Session:
    """Fold a meter sample into the session: energy since the hold, priced."""
    assert session.start_register_wh is not None and session.meterage is not None
    energy = max(session.energy_wh, e.energy_wh - session.start_register_wh)
    meterage = session.meterage.advance(
        at=e.at, energy_wh=energy, power_w=e.power_w, current_ma=e.current_ma, charging=charging
    )
    return replace(
        session,
        energy_wh=energy,
        meterage=meterage,
        last_sample_at=e.at,
        last_sample_ms=e.at_ms,
    )


def _would_exceed_cap(
    k: Kiosk, before: Session, after: Session, e: MeterSampled, *, charging: bool, release: bool
) -> bool:
    """Would the cost pass the cap before the load can end? Going on as over the last sample
    (the same energy and time steps) for one more sample and, with `release` where the kiosk
    controls the pilot, for the time the vehicle may take to leave C after the PWM goes off
    (`pilot_release_ms`) at the power the meter reads: a stop at the cap is a normal stop, and
    it must be over before the money is."""
    assert after.meterage is not None and after.authorized is not None
    if after.meterage.total() > after.authorized:
        return True
    step_wh = max(after.energy_wh - before.energy_wh, 0)
    step = (e.at - before.last_sample_at) if before.last_sample_at else None
    if step is None or step.total_seconds() <= 0:
        return False
    lead, lead_wh = step, step_wh
    if release and charging and k.rules.pwm_control:
        lead += timedelta(milliseconds=k.rules.pilot_release_ms)
        lead_wh += max(e.power_w, 0) * k.rules.pilot_release_ms // MS_PER_HOUR
    ahead = after.meterage.advance(
        at=e.at + lead,
        energy_wh=after.energy_wh + lead_wh,
        power_w=e.power_w,
        current_ma=e.current_ma,
        charging=charging,
    )
    return ahead.total() > after.authorized


def _parking_passes_cap(k: Kiosk, session: Session, e: Event) -> bool:
    """Would the first sample parked pass the cap? The idle fee (PARKING_TIME, with its
    step size) is counted ahead when the vehicle stops asking for energy, as the next sample
    is while it charges."""
    if session.meterage is None or session.authorized is None:
        return False
    ahead = session.meterage.advance(
        at=e.at + timedelta(milliseconds=k.rules.sample_interval_ms),
        energy_wh=session.energy_wh,
        power_w=0,
        current_ma=0,
        charging=False,
    )
    return ahead.total() > session.authorized


def _top_up(
    k: Kiosk, before: Session, after: Session, e: MeterSampled, *, charging: bool
) -> tuple[Session, tuple[Action, ...]]:
    """Ask for an increment when the cost, going on as over the last sample for as long as
    an answer may take (the authorization timeout and one more sample), would pass the cap.
    One at a time; none after one was declined or unanswered, or at the ceiling."""
    rules = k.rules
    if (
        rules.increment is None
        or rules.ceiling is None
        or after.increment_asked is not None
        or after.increments_over
        or after.authorized is None
        or after.meterage is None
        or before.last_sample_at is None
    ):
        return after, ()
    room = rules.ceiling - after.authorized
    step_us = (e.at - before.last_sample_at) // timedelta(microseconds=1)
    if room.minor <= 0 or step_us <= 0:
        return after, ()
    lead_us = (rules.authorization_timeout_ms + rules.sample_interval_ms) * 1000
    step_wh = max(after.energy_wh - before.energy_wh, 0)
    ahead = after.meterage.advance(
        at=e.at + timedelta(microseconds=lead_us),
        energy_wh=after.energy_wh + step_wh * lead_us // step_us,
        power_w=e.power_w,
        current_ma=e.current_ma,
        charging=charging,
    )
    if ahead.total() <= after.authorized:
        return after, ()
    amount = rules.increment.min(room)
    number = after.increments + 1
    after = replace(after, increments=number, increment_asked=after.authorized + amount)
    return after, (
        RequestIncrement(
            session_id=after.session_id, amount=amount, ceiling=rules.ceiling, number=number
        ),
    )


# -- handlers ----------------------------------------------------------------------------------


def _powered_up(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, PoweredUp)
    k, opened = _open(k)
    k = replace(k, register_wh=e.register_wh)
    actions: list[Action] = [*opened, WithdrawEnergy()]  # no energy on offer until paid
    for stale in e.unsettled:
        actions += _recover(k, stale, e)
    actions.append(StartTimer(timer=Timer.METER_SAMPLE, after_ms=k.rules.sample_interval_ms))
    if e.register_wh is None:
        # A meter missing at start is a fault like one lost later: shown and reported.
        k = replace(k, faults=k.faults | {METER_FAULT})
        actions.append(Report(kind="fault", detail=METER_FAULT))
    k2, rest = _rest(k, e.at, *actions)
    return k2, (*rest, Report(kind="started", detail=f"unsettled={len(e.unsettled)}"))


def _recover(k: Kiosk, session: Session, e: PoweredUp) -> tuple[Action, ...]:
    """Settle a session the journal shows unsettled after a restart, exactly once."""
    if session.status in (Status.AUTHORIZING, Status.AUTHORIZED) or (
        session.start_register_wh is None
    ):
        _, actions = _abandon(k, session, "restart")
        return actions
    energy = session.energy_wh
    if e.register_wh is not None:
        # The contactor has been open since the crash: the register now is the final reading.
        energy = max(energy, e.register_wh - session.start_register_wh)
    start = session.charging_started_at or session.started_at
    meterage = (
        _tariff(k, session)
        .begin(start)
        .advance(
            at=session.last_sample_at or e.at,
            energy_wh=energy,
            power_w=0,
            current_ma=0,
            charging=True,
        )
    )
    session = replace(
        session,
        energy_wh=energy,
        meterage=meterage,
        ended_at=session.ended_at or e.at,
        end_reason=session.end_reason or "restart",
    )
    _, actions = _settle(k, session, e)
    return tuple(a for a in actions if isinstance(a, Record | Capture | Void | TakeSignedReading))


def _start_session(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, CardPresented)
    if not k.available:
        return _notice(k, "out-of-order")
    session = Session(
        session_id=e.session_id,
        card=e.card,
        hold=k.rules.hold,
        tariff_key=k.rules.tariff_key,
        tariff=k.rules.tariff,
        status=Status.AUTHORIZING,
        started_at=e.at,
    )
    k = replace(k, phase=Authorizing(session=session, standing=e.standing))
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        Record(session=session),
        RequestAuthorization(session_id=session.session_id, amount=session.hold, card=e.card),
        StartTimer(timer=Timer.AUTHORIZATION, after_ms=k.rules.authorization_timeout_ms),
        ShowScreen(screen=screens.Authorizing(card=e.card.masked())),
    )


def _card_unreadable(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, CardUnreadable)
    kind = {
        CardProblem.TAP_AGAIN: "tap-again",
        CardProblem.NOT_ACCEPTED: "not-accepted",
        CardProblem.EXPIRED: "expired",
    }[e.problem]
    return _notice(k, kind)


def _answered(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, AuthorizationAnswered) and isinstance(k.phase, Authorizing)
    session = k.phase.session
    if e.session_id != session.session_id:
        return k, ()  # a late answer for an abandoned session: its void is already queued
    if _paid_at_gateway(session):
        return _web_start_answered(k, e)
    if e.outcome is AuthOutcome.DECLINED:
        session = replace(session, status=Status.DECLINED, end_reason=e.reason or "declined")
        k2, rest = _rest(k, e.at, CancelTimer(timer=Timer.AUTHORIZATION), Record(session=session))
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Declined(reason=e.reason, pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    if e.outcome is AuthOutcome.NO_ANSWER or e.amount is None:
        return _unanswered(k, e)
    approved = e.amount.min(session.hold)
    if approved < k.rules.min_authorized or k.register_wh is None:
        session, abandon = _abandon(k, session, "partial_too_low")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Declined(reason="amount too low", pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    return _hold_approved(k, session, approved, e)


def _offline_cap(k: Kiosk, session: Session, standing: LocalStanding, at: datetime) -> Money | None:
    """The cap a session may start with although the gateway gave no answer, or None (see
    `OfflinePolicy`). The store-and-forward caps hold exactly: this session's cap is counted
    into the outstanding amount and number before they are compared."""
    policy = k.rules.offline
    if standing.denied:
        return None
    if session.card.kind is CardKind.ID_TOKEN:
        return session.hold if policy.local_list and standing.listed else None
    if (
        not policy.store_and_forward
        or policy.max_session is None
        or policy.max_outstanding is None
        or policy.max_session.currency != session.currency
    ):
        return None
    cap = session.hold.min(policy.max_session)
    if standing.outstanding_count + 1 > policy.max_count:
        return None
    if standing.outstanding_minor + cap.minor > policy.max_outstanding.minor:
        return None
    oldest = standing.oldest_outstanding
    if oldest is not None and at - oldest > timedelta(milliseconds=policy.max_age_ms):
        return None
    return cap


def _unanswered(k: Kiosk, e: Event) -> Result:
    """The gateway gave no answer (unreachable, timed out, malformed): start on the local
    decision if the offline policy allows it, the authorization staying queued for when the
    gateway is back; else tell the driver and release the hold."""
    assert isinstance(k.phase, Authorizing)
    session, standing = k.phase.session, k.phase.standing
    # A session paid at the gateway starts only on its word (`_web_start_answered`).
    web = _paid_at_gateway(session)
    cap = None if web else _offline_cap(k, session, standing, e.at)
    if cap is not None and cap >= k.rules.min_authorized and k.register_wh is not None:
        k2, acts = _hold_approved(k, session, cap, e)
        return k2, (
            Report(kind="offline_start", detail=f"{session.session_id} cap={cap.minor}"),
            *acts,
        )
    reason = "denied_offline" if standing.denied else "start_unconfirmed" if web else "no_answer"
    session, abandon = _abandon(k, session, reason)
    k2, rest = _rest(k, e.at, *abandon)
    screen: screens.Screen = (
        screens.Declined(reason="not allowed", pay_url=k.pay_url or "")
        if standing.denied
        else screens.NoAnswer(pay_url=k.pay_url or "")
    )
    return k2, (
        *rest[:-1],
        ShowScreen(screen=screen),
        StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
    )


def _hold_approved(k: Kiosk, session: Session, approved: Money, e: Event) -> Result:
    """The session may go on with `approved` as its cost cap: charge, or wait for the car."""
    session = replace(
        session,
        status=Status.AUTHORIZED,
        authorized=approved,
        start_register_wh=k.register_wh,
    )
    if not k.available and k.faults:
        session, abandon = _abandon(k, session, "fault")
        return _rest(k, e.at, *abandon)
    current = offered_current(k.rules, k.current_limit_a, session)
    session = replace(session, offered_a=current)
    offer = OfferEnergy(current_a=current)
    if _may_charge(k):
        k2, acts = _begin_charging(k, session, e)
        return k2, (CancelTimer(timer=Timer.AUTHORIZATION), offer, *acts)
    k = replace(k, phase=AwaitingVehicle(session=session))
    return k, (
        CancelTimer(timer=Timer.AUTHORIZATION),
        Record(session=session),
        offer,
        StartTimer(timer=Timer.PLUG_IN, after_ms=k.rules.plug_in_timeout_ms),
        ShowScreen(
            screen=screens.PlugIn(
                authorized=approved,
                connected=k.pilot.connected,
                partial=approved < session.hold,
            )
        ),
    )


def _authorizing_timer(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TimerFired) and isinstance(k.phase, Authorizing)
    if e.timer is Timer.AUTHORIZATION:
        return _unanswered(k, e)
    return _common_timer(k, e)


def _common_timer(k: Kiosk, e: Event) -> Result:
    """Timers every phase handles the same way."""
    assert isinstance(e, TimerFired)
    if e.timer is Timer.METER_SAMPLE:
        return k, (
            ReadMeter(),
            CheckContactor(),
            StartTimer(timer=Timer.METER_SAMPLE, after_ms=k.rules.sample_interval_ms),
        )
    if e.timer is Timer.CONTACTOR_CHECK:
        return k, (CheckContactor(),)
    if e.timer is Timer.NOTICE:
        return k, (ShowScreen(screen=_phase_screen(k, e)),)
    if e.timer is Timer.PAY_CODE:
        return _pay_code(k, e, None)
    if e.timer is Timer.WEB_PAYMENT:
        return _web_payment_over(k, e)
    return k, ()  # a timer of another phase that was not cancelled: harmless


def _phase_screen(k: Kiosk, e: Event) -> screens.Screen:
    phase = k.phase
    match phase:
        case Charging():
            return _charging_screen(phase.session, e, 0)
        case Suspended():
            s = phase.session
            return screens.Suspended(energy_wh=s.energy_wh, cost=_cost(s))
        case AwaitingVehicle():
            s = phase.session
            assert s.authorized is not None
            return screens.PlugIn(authorized=s.authorized, connected=k.pilot.connected)
        case Authorizing():
            return screens.Authorizing(card=phase.session.card.masked())
        case Finishing():
            return screens.Stopping(reason=phase.session.end_reason or "")
        case _:
            return _idle_screen(k, e.at)


def _receipt_timer(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TimerFired)
    if e.timer is Timer.RECEIPT:
        return _rest(k, e.at)
    if e.timer is Timer.NOTICE:
        return k, ()  # the receipt stays
    return _common_timer(k, e)


def _awaiting_timer(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TimerFired) and isinstance(k.phase, AwaitingVehicle)
    if e.timer is Timer.PLUG_IN:
        _, abandon = _abandon(k, k.phase.session, "plug_in_timeout")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Notice(kind="timed-out")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    return _common_timer(k, e)


def _charging_timer(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TimerFired) and isinstance(k.phase, Charging)
    if e.timer is Timer.PILOT_RELEASE and k.phase.stopping is not None:
        return _released(k, e)
    return _common_timer(k, e)


def _suspended_timer(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TimerFired) and isinstance(k.phase, Suspended)
    if e.timer is Timer.SUSPENDED:
        return _stop(k, k.phase.session, e, "suspended_timeout")
    return _common_timer(k, e)


def _pilot(k: Kiosk, e: Event) -> tuple[Kiosk, tuple[Action, ...]]:
    """Track the pilot state; E/F is a fault (the contactor opens first)."""
    assert isinstance(e, VehicleStateChanged)
    k = replace(k, pilot=e.state)
    if e.state.faulted and PILOT_FAULT not in k.faults:
        k = replace(k, faults=k.faults | {PILOT_FAULT})
        k, opened = _open(k)
        return k, (*opened, Report(kind="fault", detail=PILOT_FAULT))
    if not e.state.faulted and PILOT_FAULT in k.faults:
        return replace(k, faults=k.faults - {PILOT_FAULT}), (
            Report(kind="fault_cleared", detail=PILOT_FAULT),
        )
    return k, ()


def _vehicle_at_rest(k: Kiosk, e: Event) -> Result:
    """Idle / Receipt / Unavailable / Booting: just track it (and refresh the idle hint)."""
    was_available = k.available
    k, acts = _pilot(k, e)
    if isinstance(k.phase, Idle | Unavailable):
        if was_available != k.available:
            k2, rest = _rest(k, e.at, *acts)
            return k2, rest
        return k, (*acts, ShowScreen(screen=_idle_screen(k, e.at)))
    return k, acts


def _vehicle_authorizing(k: Kiosk, e: Event) -> Result:
    assert isinstance(k.phase, Authorizing)
    session = k.phase.session
    k, acts = _pilot(k, e)
    if k.faults:
        _, abandon = _abandon(k, session, "fault")
        return _rest(k, e.at, *acts, *abandon)
    return k, acts


def _vehicle_awaiting(k: Kiosk, e: Event) -> Result:
    assert isinstance(k.phase, AwaitingVehicle)
    session = k.phase.session
    k, acts = _pilot(k, e)
    if k.faults:
        _, abandon = _abandon(k, session, "fault")
        return _rest(k, e.at, *acts, *abandon)
    if _may_charge(k):
        k2, more = _begin_charging(k, session, e)
        return k2, (*acts, *more)
    assert session.authorized is not None
    return k, (
        *acts,
        ShowScreen(
            screen=screens.PlugIn(authorized=session.authorized, connected=k.pilot.connected)
        ),
    )


def _vehicle_charging(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, VehicleStateChanged) and isinstance(k.phase, Charging)
    session = k.phase.session
    stopping = k.phase.stopping
    k, acts = _pilot(k, e)
    if k.faults:
        k2, more = _stop(k, session, e, "fault")
        return k2, (*acts, *more)
    if stopping is not None and not e.state.wants_energy:
        return _stop(k, session, e, stopping)  # C→B after the PWM went off: now open
    if e.state is PilotState.A:
        return _stop(k, session, e, "unplugged")
    if not e.state.wants_energy:
        # C→B: the vehicle stopped asking; IEC 61851-1 wants the contactor open at once.
        if _parking_passes_cap(k, session, e):
            return _stop(k, session, e, "cost_cap")
        k, opened = _open(k)
        session = replace(session, status=Status.SUSPENDED)
        return replace(k, phase=Suspended(session=session)), (
            *opened,
            Record(session=session),
            StartTimer(timer=Timer.SUSPENDED, after_ms=k.rules.suspended_timeout_ms),
            ShowScreen(screen=screens.Suspended(energy_wh=session.energy_wh, cost=_cost(session))),
        )
    return k, acts  # C↔D


def _vehicle_suspended(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, VehicleStateChanged) and isinstance(k.phase, Suspended)
    session = k.phase.session
    k, acts = _pilot(k, e)
    if k.faults:
        k2, more = _stop(k, session, e, "fault")
        return k2, (*acts, *more)
    if e.state is PilotState.A:
        return _stop(k, session, e, "unplugged")
    if _may_charge(k):
        return _begin_charging(k, session, e)
    return k, acts


def _tap_in_session(k: Kiosk, e: Event) -> Result:
    """Only the card that started a session can stop it."""
    assert isinstance(e, CardPresented)
    session = k.session
    assert session is not None
    if e.card.token != session.card.token:
        return _notice(k, "in-use")
    phase = k.phase
    if isinstance(phase, AwaitingVehicle):
        _, abandon = _abandon(k, session, "cancelled")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Notice(kind="cancelled")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    if isinstance(phase, Charging) and phase.stopping is not None:
        return k, ()  # already stopping
    if isinstance(phase, Charging | Suspended):
        return _release(k, session, e, "card")
    return k, ()  # Authorizing or Finishing: a second tap of the same card means nothing


def _tap_unavailable(k: Kiosk, e: Event) -> Result:
    return _notice(k, "out-of-order")


def _sample_at_rest(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, MeterSampled)
    if k.register_wh is not None and e.energy_wh < k.register_wh:
        return _fault(k, e, METER_FAULT)  # a register going backwards is a broken meter
    k = replace(k, register_wh=e.energy_wh)
    if METER_FAULT in k.faults:
        return _clear(k, e, METER_FAULT)
    return k, ()


def _sample_charging(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, MeterSampled) and isinstance(k.phase, Charging | Suspended)
    charging = isinstance(k.phase, Charging)
    before = k.phase.session
    if k.register_wh is not None and e.energy_wh < k.register_wh:
        return _fault(k, e, METER_FAULT)
    k = replace(k, register_wh=e.energy_wh)
    after = _fold_sample(before, e, k, charging=charging)
    stopping = isinstance(k.phase, Charging) and k.phase.stopping is not None
    assert after.meterage is not None and after.authorized is not None
    if after.meterage.total() > after.authorized or (
        stopping and _would_exceed_cap(k, before, after, e, charging=charging, release=False)
    ):
        # Past the cap (a power jump), or about to pass it while a normal stop waits for C→B:
        # the authorized amount is a hard limit, the contactor opens at once.
        return _stop(k, after, e, "cost_cap")
    if not stopping and _would_exceed_cap(k, before, after, e, charging=charging, release=True):
        return _release(k, after, e, "cost_cap")  # PWM off: the vehicle ends the load
    after, top_up = _top_up(k, before, after, e, charging=charging)
    actions: list[Action] = [*top_up]
    current = offered_current(k.rules, k.current_limit_a, after)
    if not stopping and after.offered_a is not None and current != after.offered_a:
        after = replace(after, offered_a=current)  # lower near the cap, back up when raised
        actions.append(OfferEnergy(current_a=current))
    if after.energy_wh - before.journaled_wh >= k.rules.record_every_wh:
        after = replace(after, amount=_cost(after), journaled_wh=after.energy_wh)
        actions.append(Record(session=after))
    if stopping and isinstance(k.phase, Charging):
        k = replace(k, phase=replace(k.phase, session=after))  # the stopping screen stays
    elif charging:
        k = replace(k, phase=Charging(session=after))
        actions.append(ShowScreen(screen=_charging_screen(after, e, e.power_w)))
    else:
        k = replace(k, phase=Suspended(session=after))
        actions.append(
            ShowScreen(screen=screens.Suspended(energy_wh=after.energy_wh, cost=_cost(after)))
        )
    return k, tuple(actions)


def _increment_answered(k: Kiosk, e: Event) -> Result:
    """An approved increment raises the cap, to no more than was asked for; a declined or
    unanswered one leaves it, and the session stops at it as without increments."""
    assert isinstance(e, IncrementAnswered) and isinstance(k.phase, Charging | Suspended)
    session = k.phase.session
    asked = session.increment_asked
    if e.session_id != session.session_id or asked is None or session.authorized is None:
        return k, ()  # a late answer: the terminal stopped counting on it
    approved = (
        e.outcome is AuthOutcome.APPROVED
        and e.amount is not None
        and e.amount.currency == session.currency
        and e.amount > session.authorized
    )
    if not approved or e.amount is None:
        session = replace(session, increment_asked=None, increments_over=True)
        return replace(k, phase=replace(k.phase, session=session)), ()
    session = replace(session, authorized=e.amount.min(asked), increment_asked=None)
    k = replace(k, phase=replace(k.phase, session=session))
    screen = (
        _charging_screen(session, e, 0)
        if isinstance(k.phase, Charging)
        else screens.Suspended(energy_wh=session.energy_wh, cost=_cost(session))
    )
    return k, (Record(session=session), ShowScreen(screen=screen))


def _cost_limit_set(k: Kiosk, e: Event) -> Result:
    """The CSMS's cost limit lowers the cap (never raises it: the hold is what was approved),
    and no increment tops it up past the limit. Below the minimum before any energy: the
    hold is released; at or under the cost so far: the session stops at the cap now."""
    assert isinstance(e, CostLimitSet)
    assert isinstance(k.phase, AwaitingVehicle | Charging | Suspended)
    session = k.phase.session
    if (
        e.session_id != session.session_id
        or session.authorized is None
        or e.limit.currency != session.currency
        or e.limit >= session.authorized
    ):
        return k, ()
    session = replace(session, authorized=e.limit, increments_over=True, increment_asked=None)
    if isinstance(k.phase, AwaitingVehicle):
        if e.limit < k.rules.min_authorized:
            _, abandon = _abandon(k, session, "cost_cap")
            return _rest(k, e.at, *abandon)
        screen: screens.Screen = screens.PlugIn(
            authorized=e.limit, connected=k.pilot.connected, partial=e.limit < session.hold
        )
        k = replace(k, phase=AwaitingVehicle(session=session))
        return k, (Record(session=session), ShowScreen(screen=screen))
    if session.meterage is not None and session.meterage.total() >= e.limit:
        return _stop(k, session, e, "cost_cap")
    k = replace(k, phase=replace(k.phase, session=session))
    if isinstance(k.phase, Charging) and k.phase.stopping is not None:
        return k, (Record(session=session),)  # the stopping screen stays
    screen = (
        _charging_screen(session, e, 0)
        if isinstance(k.phase, Charging)
        else screens.Suspended(energy_wh=session.energy_wh, cost=_cost(session))
    )
    return k, (Record(session=session), ShowScreen(screen=screen))


def _sample_finishing(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, MeterSampled) and isinstance(k.phase, Finishing)
    session = k.phase.session
    if k.register_wh is not None and e.energy_wh < k.register_wh:
        return _settle(replace(k, faults=k.faults | {METER_FAULT}), session, e)
    k = replace(k, register_wh=e.energy_wh)
    if session.meterage is not None:
        session = _fold_sample(session, e, k, charging=False)
    return _settle(k, session, e)


def _meter_failed_finishing(k: Kiosk, e: Event) -> Result:
    assert isinstance(k.phase, Finishing)
    session = k.phase.session
    k = replace(k, faults=k.faults | {METER_FAULT})
    k2, acts = _settle(k, session, e)
    return k2, (Report(kind="fault", detail=METER_FAULT), *acts)


def _fault(k: Kiosk, e: Event, fault: str) -> Result:
    """Any fault: the contactor opens first, then the session ends, then the screen."""
    k = replace(k, faults=k.faults | {fault})
    k, opened = _open(k)
    report = Report(kind="fault", detail=fault)
    phase = k.phase
    match phase:
        case Charging() | Suspended():
            k2, acts = _stop(k, phase.session, e, METER_FAULT if fault == METER_FAULT else "fault")
            return k2, (*opened, report, *acts)
        case Authorizing() | AwaitingVehicle():
            _, abandon = _abandon(k, phase.session, "fault")
            k2, rest = _rest(k, e.at, *abandon)
            return k2, (*opened, report, *rest)
        case Idle() | Unavailable():
            k2, rest = _rest(k, e.at)
            return k2, (*opened, report, *rest)
        case _:
            return k, (*opened, report)  # Booting, Finishing, Receipt: the phase ends on its own


def _fault_raised(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, FaultRaised)
    if e.fault in k.faults and not k.contactor_closed:
        # Already handled: raising it again changes nothing (and a fault that keeps failing,
        # such as a broken journal, must not turn into an endless storm of reports).
        return k, ()
    return _fault(k, e, e.fault)


def _meter_failed(k: Kiosk, e: Event) -> Result:
    if METER_FAULT in k.faults and not k.contactor_closed:
        # Still missing at the next sample: already shown and reported (no report storm).
        return k, ()
    return _fault(k, e, METER_FAULT)


def _clear(k: Kiosk, e: Event, fault: str) -> Result:
    if fault not in k.faults:
        return k, ()
    k = replace(k, faults=k.faults - {fault})
    report = Report(kind="fault_cleared", detail=fault)
    if isinstance(k.phase, Idle | Unavailable):
        return _rest(k, e.at, report)
    return k, (report,)


def _fault_cleared(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, FaultCleared)
    if e.fault == WELDED and not k.contactor_closed:
        # A technician's clear is believed only if the feedback agrees at the next check.
        k2, acts = _clear(k, e, e.fault)
        return k2, (*acts, CheckContactor())
    return _clear(k, e, e.fault)


def _checked(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, ContactorChecked)
    if e.commanded_closed is not None and e.commanded_closed != k.contactor_closed:
        # Read before the latest command (e.g. in the same batch as the meter sample that
        # stopped charging at the cap): stale, not a weld; the timed check follows.
        return k, ()
    if e.closed and not k.contactor_closed and WELDED not in k.faults:
        return _fault(k, e, WELDED)
    if not e.closed and k.contactor_closed and FAILED_TO_CLOSE not in k.faults:
        return _fault(k, e, FAILED_TO_CLOSE)
    return k, ()


def _out_of_service(k: Kiosk, e: Event) -> Result:
    """Out of service takes effect when no session runs; a running session finishes first."""
    assert isinstance(e, OutOfServiceChanged)
    k = replace(k, out_of_service=e.on)
    report = Report(kind="out_of_service", detail="on" if e.on else "off")
    if isinstance(k.phase, Idle | Unavailable):
        return _rest(k, e.at, report)
    return k, (report,)


# -- the technician's console ------------------------------------------------------------------

# Tests that need the relay or the reader to themselves run only between sessions.
_BETWEEN_SESSIONS = (Idle, Receipt, Unavailable)
_READ_ONLY_TESTS = (Diagnostic.SELFTEST, Diagnostic.METER)


def _diagnostic_refusal(k: Kiosk, test: Diagnostic) -> str | None:
    """Why a device test may not run now, or None. The relay test closes the contactor
    outside a session, so it runs only with no vehicle connected (pilot A): with no vehicle
    the EVSE controller's pilot logic keeps the outlet dead, and no session can start while
    the daemon thread holds the relay for the test."""
    if isinstance(k.phase, Booting):
        return "the kiosk is starting"
    if test in _READ_ONLY_TESTS:
        return None
    if not isinstance(k.phase, _BETWEEN_SESSIONS):
        return f"a session is running ({type(k.phase).__name__})"
    if test is Diagnostic.RELAY and k.pilot is not PilotState.A:
        return f"a vehicle is connected (pilot {k.pilot.value})"
    return None


def _diagnostic_requested(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, DiagnosticRequested)
    refusal = _diagnostic_refusal(k, e.test)
    if refusal is not None:
        text = f"{e.test.value} test refused: {refusal}"
        return k, (
            Answer(request_id=e.request_id, ok=False, text=text),
            Report(kind="diagnostic", detail=text),
        )
    return k, (
        RunDiagnostic(
            request_id=e.request_id,
            test=e.test,
            operate_ms=k.rules.contactor_check_ms,
            contactor_closed=k.contactor_closed,
            window_ms=e.window_ms,
        ),
    )


def _diagnostic_finished(k: Kiosk, e: Event) -> Result:
    """Answer the console; tests that touch a device are reported to the gateway too. A weld
    found by the relay test arrives as its own `ContactorChecked` and faults as always."""
    assert isinstance(e, DiagnosticFinished)
    answer = Answer(request_id=e.request_id, ok=e.passed, text=e.detail)
    if e.test is Diagnostic.METER:
        return k, (answer,)
    verdict = "pass" if e.passed else "fail"
    summary = " ".join(e.detail.split())[:160]
    return k, (answer, Report(kind="diagnostic", detail=f"{e.test.value} {verdict}: {summary}"))


def _signed_reading_now(k: Kiosk, e: Event) -> Result:
    """A signed reading of the running session on request: the last register read."""
    session = k.session
    if session is None or session.start_register_wh is None or k.register_wh is None:
        return k, ()
    return k, (
        TakeSignedReading(
            session_id=session.session_id, kind="charging", register_wh=k.register_wh, at=e.at
        ),
    )


def _stop_requested(k: Kiosk, e: Event) -> Result:
    """The operator stops the session from afar: as a tap of the same card would, or, before
    any energy, by releasing the hold. A request for another session changes nothing."""
    assert isinstance(e, StopRequested)
    phase = k.phase
    if not isinstance(phase, AwaitingVehicle | Charging | Suspended):
        return k, ()
    if phase.session.session_id != e.session_id:
        return k, ()
    if isinstance(phase, AwaitingVehicle):
        _, abandon = _abandon(k, phase.session, "remote")
        return _rest(k, e.at, *abandon)
    if isinstance(phase, Charging) and phase.stopping is not None:
        return k, ()  # already stopping
    return _release(k, phase.session, e, "remote")


# -- a session paid on the web (the kiosk's QR code) -----------------------------------------


def _web_refusal(k: Kiosk, e: WebPaymentAuthorized) -> str | None:
    """Why a web-paid session may not start now, or None. The gateway releases the hold on
    any of these; the driver's phone page says so."""
    if isinstance(k.phase, Booting):
        return "starting"
    if not k.available:
        return "unavailable"
    if not isinstance(k.phase, Idle | Receipt) or k.web_payment:
        return "busy"  # a session, or a web payment the CSMS runs, has the charger
    if e.at >= e.expires_at:
        return "expired"  # the code's lifetime is over: never start after it
    limit = k.rules.ceiling or k.rules.hold
    if e.cost_limit.currency != limit.currency:
        return "currency"
    if e.cost_limit > limit:
        return "over_limit"
    if e.cost_limit < k.rules.min_authorized:
        return "under_minimum"
    if k.register_wh is None:
        return "meter"
    return None


def _web_payment(k: Kiosk, e: Event) -> Result:
    """Take a session the gateway holds the money for, with its cost limit as the cap, or
    answer why not. Taken, the session is recorded and answered "started" in the same
    journal transaction (an answer "started" always has a session to settle), and waits in
    `Authorizing` for the gateway to take that answer: the gateway refuses it once it has
    released the hold (the start expired while the kiosk was away), so energy is offered only
    on a hold still in force (`_web_start_answered`). No answer by the authorization timeout:
    the session is abandoned and its hold released, as a card's would be."""
    assert isinstance(e, WebPaymentAuthorized)
    refusal = _web_refusal(k, e)
    if refusal is not None:
        answer = AnswerStart(
            command_id=e.command_id, session_id=e.session_id, started=False, reason=refusal
        )
        return k, (answer,)
    card = Card(kind=CardKind.WEB, token=f"web:{e.session_id}", brand=e.brand, last4=e.last4)
    session = Session(
        session_id=e.session_id,
        card=card,
        hold=e.cost_limit,
        tariff_key=k.rules.tariff_key,
        tariff=k.rules.tariff,
        status=Status.AUTHORIZING,
        started_at=e.at,
    )
    k = replace(k, phase=Authorizing(session=session))
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        Record(session=session),
        AnswerStart(command_id=e.command_id, session_id=e.session_id, started=True),
        StartTimer(timer=Timer.AUTHORIZATION, after_ms=k.rules.authorization_timeout_ms),
        ShowScreen(screen=screens.Authorizing(card=card.masked())),
    )


# -- a web payment the CSMS runs (OCPP 2.1 C25) -------------------------------------------------


def _web_payment_started(k: Kiosk, e: Event) -> Result:
    """Keep the charger for the driver paying on the CSMS's page: between sessions and
    available, the kiosk shows "payment in progress on your phone" until the CSMS starts the
    transaction or `timeout_ms` passes (C25). Busy, unavailable or starting: nothing changes
    (NotifyWebPaymentStarted has no answer to refuse with; the CSMS's start is refused)."""
    assert isinstance(e, WebPaymentStarted)
    if not isinstance(k.phase, Idle | Receipt) or not k.available or e.timeout_ms <= 0:
        return k, ()
    k = replace(k, phase=Idle(), web_payment=True)
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        StartTimer(timer=Timer.WEB_PAYMENT, after_ms=e.timeout_ms),
        ShowScreen(screen=_idle_screen(k, e.at)),
    )


def _web_payment_over(k: Kiosk, e: Event) -> Result:
    """No start came in time: the charger is free again."""
    k = replace(k, web_payment=False)
    if isinstance(k.phase, Idle):
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _tap_idle(k: Kiosk, e: Event) -> Result:
    """A tap starts a session, unless a web payment keeps the charger: then only the CSMS's
    start for it (a `CardKind.WEB` card) does, and any other card is told the charger is
    reserved."""
    assert isinstance(e, CardPresented)
    if not k.web_payment:
        return _start_session(k, e)
    if e.card.kind is not CardKind.WEB or not k.available:
        return _notice(k, "reserved")
    k2, acts = _start_session(replace(k, web_payment=False), e)
    return k2, (CancelTimer(timer=Timer.WEB_PAYMENT), *acts)


def _tariff_changed(k: Kiosk, e: Event) -> Result:
    """New sessions are priced by the tariff received; the idle screen shows its price at
    once (AFIR: the price before the start). A running session keeps its own."""
    assert isinstance(e, TariffChanged)
    k = replace(k, rules=replace(k.rules, tariff=e.tariff, tariff_key=e.key))
    if isinstance(k.phase, Idle) and k.available:
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _paid_at_gateway(session: Session) -> bool:
    """A session paid on the gateway's page (`_web_payment` makes its card), as opposed to one
    a CSMS's payment service holds (OCPP C25, a web card at a tap)."""
    return session.card.kind is CardKind.WEB and session.card.token == f"web:{session.session_id}"


def _web_start_answered(k: Kiosk, e: AuthorizationAnswered) -> Result:
    """The gateway's answer to this kiosk's "started" for a web-paid session. Taken: the
    session goes on with its cost limit as the cap. Refused (the gateway released the hold:
    the start expired before the answer came): abandoned, nothing offered. No answer yet:
    the answer stays queued and the authorization timer decides."""
    assert isinstance(k.phase, Authorizing)
    session = k.phase.session
    if e.outcome is AuthOutcome.NO_ANSWER:
        return k, ()
    if e.outcome is AuthOutcome.DECLINED:
        session, abandon = _abandon(k, session, "start_refused")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.NoAnswer(pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    return _hold_approved(k, session, session.hold, e)


def _pay_code(k: Kiosk, e: Event, url: str | None) -> Result:
    """Show the new code (or none) at once where the idle screen is up; elsewhere it shows
    when the kiosk is idle again."""
    k = replace(k, pay_url=url)
    if isinstance(k.phase, Idle) and k.available:
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _pay_code_changed(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, PayCodeChanged)
    if e.url is None or e.valid_ms <= 0:
        k2, acts = _pay_code(k, e, None)
        return k2, (CancelTimer(timer=Timer.PAY_CODE), *acts)
    k2, acts = _pay_code(k, e, e.url)
    return k2, (StartTimer(timer=Timer.PAY_CODE, after_ms=e.valid_ms), *acts)


def _current_limited(k: Kiosk, e: Event) -> Result:
    """A load manager's limit: kept, and applied at once to a session the pilot offers to
    (not to one whose PWM is already off for a normal stop)."""
    assert isinstance(e, CurrentLimited)
    k = replace(k, current_limit_a=e.limit_a)
    phase = k.phase
    offering = isinstance(phase, AwaitingVehicle | Suspended) or (
        isinstance(phase, Charging) and phase.stopping is None
    )
    if not offering or not isinstance(phase, AwaitingVehicle | Charging | Suspended):
        return k, ()
    session = phase.session
    current = offered_current(k.rules, k.current_limit_a, session)
    if session.offered_a is None or current == session.offered_a:
        return k, ()
    session = replace(session, offered_a=current)
    return replace(k, phase=replace(phase, session=session)), (OfferEnergy(current_a=current),)


def _technician(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TechnicianActed)
    return k, (Report(kind=e.kind, detail=e.detail),)


# -- the table ---------------------------------------------------------------------------------

_AT_REST = {
    VehicleStateChanged: _vehicle_at_rest,
    MeterSampled: _sample_at_rest,
    MeterFailed: _meter_failed,
    ContactorChecked: _checked,
    FaultRaised: _fault_raised,
    FaultCleared: _fault_cleared,
    OutOfServiceChanged: _out_of_service,
}

TRANSITIONS: dict[tuple[type, type], Handler] = {
    (Booting, PoweredUp): _powered_up,
    (Booting, VehicleStateChanged): _vehicle_at_rest,
    (Booting, FaultRaised): _fault_raised,
    (Booting, FaultCleared): _fault_cleared,
    (Booting, OutOfServiceChanged): _out_of_service,
    **{(Idle, ev): h for ev, h in _AT_REST.items()},
    (Idle, CardPresented): _tap_idle,
    (Idle, CardUnreadable): _card_unreadable,
    (Idle, TimerFired): _common_timer,
    (Authorizing, AuthorizationAnswered): _answered,
    (Authorizing, TimerFired): _authorizing_timer,
    (Authorizing, VehicleStateChanged): _vehicle_authorizing,
    (Authorizing, MeterSampled): _sample_at_rest,
    (Authorizing, MeterFailed): _meter_failed,
    (Authorizing, ContactorChecked): _checked,
    (Authorizing, FaultRaised): _fault_raised,
    (Authorizing, FaultCleared): _fault_cleared,
    (Authorizing, OutOfServiceChanged): _out_of_service,
    (Authorizing, CardPresented): _tap_in_session,
    (AwaitingVehicle, VehicleStateChanged): _vehicle_awaiting,
    (AwaitingVehicle, TimerFired): _awaiting_timer,
    (AwaitingVehicle, CardPresented): _tap_in_session,
    (AwaitingVehicle, CardUnreadable): _card_unreadable,
    (AwaitingVehicle, MeterSampled): _sample_at_rest,
    (AwaitingVehicle, MeterFailed): _meter_failed,
    (AwaitingVehicle, ContactorChecked): _checked,
    (AwaitingVehicle, FaultRaised): _fault_raised,
    (AwaitingVehicle, FaultCleared): _fault_cleared,
    (AwaitingVehicle, OutOfServiceChanged): _out_of_service,
    (Charging, MeterSampled): _sample_charging,
    (Charging, MeterFailed): _meter_failed,
    (Charging, IncrementAnswered): _increment_answered,
    (Charging, VehicleStateChanged): _vehicle_charging,
    (Charging, CardPresented): _tap_in_session,
    (Charging, CardUnreadable): _card_unreadable,
    (Charging, TimerFired): _charging_timer,
    (Charging, ContactorChecked): _checked,
    (Charging, FaultRaised): _fault_raised,
    (Charging, FaultCleared): _fault_cleared,
    (Charging, OutOfServiceChanged): _out_of_service,
    (Suspended, MeterSampled): _sample_charging,
    (Suspended, MeterFailed): _meter_failed,
    (Suspended, IncrementAnswered): _increment_answered,
    (Suspended, VehicleStateChanged): _vehicle_suspended,
    (Suspended, CardPresented): _tap_in_session,
    (Suspended, CardUnreadable): _card_unreadable,
    (Suspended, TimerFired): _suspended_timer,
    (Suspended, ContactorChecked): _checked,
    (Suspended, FaultRaised): _fault_raised,
    (Suspended, FaultCleared): _fault_cleared,
    (Suspended, OutOfServiceChanged): _out_of_service,
    (Finishing, MeterSampled): _sample_finishing,
    (Finishing, MeterFailed): _meter_failed_finishing,
    (Finishing, VehicleStateChanged): _vehicle_at_rest,
    (Finishing, TimerFired): _common_timer,
    (Finishing, ContactorChecked): _checked,
    (Finishing, FaultRaised): _fault_raised,
    (Finishing, FaultCleared): _fault_cleared,
    (Finishing, OutOfServiceChanged): _out_of_service,
    **{(Receipt, ev): h for ev, h in _AT_REST.items()},
    (Receipt, CardPresented): _start_session,
    (Receipt, CardUnreadable): _card_unreadable,
    (Receipt, TimerFired): _receipt_timer,
    **{(Unavailable, ev): h for ev, h in _AT_REST.items()},
    (Unavailable, CardPresented): _tap_unavailable,
    (Unavailable, CardUnreadable): _tap_unavailable,
    (Unavailable, TimerFired): _common_timer,
    **{(phase, DiagnosticRequested): _diagnostic_requested for phase in PHASE_TYPES},
    **{(phase, DiagnosticFinished): _diagnostic_finished for phase in PHASE_TYPES},
    **{(phase, TechnicianActed): _technician for phase in PHASE_TYPES},
    **{(phase, CurrentLimited): _current_limited for phase in PHASE_TYPES},
    (Charging, SignedReadingRequested): _signed_reading_now,
    (Suspended, SignedReadingRequested): _signed_reading_now,
    (AwaitingVehicle, StopRequested): _stop_requested,
    (Charging, StopRequested): _stop_requested,
    (Suspended, StopRequested): _stop_requested,
    (AwaitingVehicle, CostLimitSet): _cost_limit_set,
    (Charging, CostLimitSet): _cost_limit_set,
    (Suspended, CostLimitSet): _cost_limit_set,
    # Every phase answers a web payment: started (Idle, Receipt) or not, and why.
    **{(phase, WebPaymentAuthorized): _web_payment for phase in PHASE_TYPES},
    **{(phase, PayCodeChanged): _pay_code_changed for phase in PHASE_TYPES},
    **{(phase, LinkCodeIssued): _link_code_issued for phase in PHASE_TYPES},
    **{(phase, WebPaymentStarted): _web_payment_started for phase in PHASE_TYPES},
    **{(phase, TariffChanged): _tariff_changed for phase in PHASE_TYPES},
}

IGNORED: frozenset[tuple[type, type]] = frozenset(
    {
        # Nothing happens before the shell says the kiosk is up.
        (Booting, CardPresented),
        (Booting, CardUnreadable),
        (Booting, AuthorizationAnswered),
        (Booting, MeterSampled),
        (Booting, MeterFailed),
        (Booting, ContactorChecked),
        (Booting, TimerFired),
        # Only one boot.
        *((phase, PoweredUp) for phase in PHASE_TYPES if phase is not Booting),
        # Late answers for abandoned sessions: their void is queued behind them.
        (Idle, AuthorizationAnswered),
        (AwaitingVehicle, AuthorizationAnswered),
        (Charging, AuthorizationAnswered),
        (Suspended, AuthorizationAnswered),
        (Finishing, AuthorizationAnswered),
        (Receipt, AuthorizationAnswered),
        (Unavailable, AuthorizationAnswered),
        # Increments are asked for only while charging or suspended; an answer that comes
        # later is not counted on (the capture, queued behind it, stays within the cap).
        *(
            (phase, IncrementAnswered)
            for phase in PHASE_TYPES
            if phase is not Charging and phase is not Suspended
        ),
        # A second tap while the hold is requested or the session is closing means nothing.
        (Authorizing, CardUnreadable),
        (Finishing, CardPresented),
        (Finishing, CardUnreadable),
        # A stop from afar belongs to a session with a hold (a late one finds none).
        *(
            (phase, StopRequested)
            for phase in PHASE_TYPES
            if phase not in (AwaitingVehicle, Charging, Suspended)
        ),
        # A cost limit belongs to a session with a hold (a late one finds none).
        *(
            (phase, CostLimitSet)
            for phase in PHASE_TYPES
            if phase not in (AwaitingVehicle, Charging, Suspended)
        ),
        # A signed reading on request belongs to a session with energy flowing or paused.
        *(
            (phase, SignedReadingRequested)
            for phase in PHASE_TYPES
            if phase not in (Charging, Suspended)
        ),
    }
)


def step(kiosk: Kiosk, event: Event) -> Result:
    """Fold one event into the state; return the new state and the actions, in order."""
    key = (type(kiosk.phase), type(event))
    handler = TRANSITIONS.get(key)
    if handler is None:
        if key in IGNORED:
            return kiosk, ()
        raise AssertionError(f"unhandled pair {key}")  # a bug: the table test prevents it
    return handler(kiosk, event)
