"""The machine's timers, by phase: the authorization and plug-in timeouts, the receipt's and
a suspended session's end, the pilot's release, and the timers every phase handles alike."""

from __future__ import annotations

from terminal.core import screens
from terminal.core.actions import CheckContactor, ReadMeter, ShowScreen, StartTimer
from terminal.core.events import Event, Timer, TimerFired
from terminal.core.handlers.authorizing import _unanswered
from terminal.core.handlers.base import Result, _charging_screen, _cost, _idle_screen, _rest
from terminal.core.handlers.ending import _abandon, _released, _stop
from terminal.core.handlers.idle import _pay_code, _web_payment_over
from terminal.core.kiosk import Authorizing, AwaitingVehicle, Charging, Finishing, Kiosk, Suspended


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
