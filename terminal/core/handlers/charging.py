"""Energy flowing or paused (Charging, Suspended): closing the contactor, each meter sample
priced against the cap (stop at it, or top the hold up), an increment's answer, the CSMS's cost
limit, and a load manager's current limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from terminal.core import screens
from terminal.core.actions import (
    Action,
    CancelTimer,
    CloseContactor,
    OfferEnergy,
    Record,
    RequestIncrement,
    ShowScreen,
    StartTimer,
    TakeSignedReading,
)
from terminal.core.current import offered_current
from terminal.core.events import (
    AuthOutcome,
    CostLimitSet,
    CurrentLimited,
    Event,
    IncrementAnswered,
    MeterSampled,
    Timer,
)
from terminal.core.handlers.base import (
    METER_FAULT,
    MS_PER_HOUR,
    Result,
    _charging_screen,
    _cost,
    _fold_sample,
    _rest,
    _tariff,
)
from terminal.core.handlers.ending import _abandon, _release, _stop
from terminal.core.handlers.faults import _fault
from terminal.core.kiosk import AwaitingVehicle, Charging, Kiosk, Suspended
from terminal.core.session import Session, Status


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
