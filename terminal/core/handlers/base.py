"""What every handler stands on: the result type, the fault names, and the small moves and
views the handlers share (back to rest, open the contactor, a notice; the tariff, the running
cost, a meter sample folded in, the idle and charging screens). Pure functions of the state."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from terminal.core import screens
from terminal.core.actions import Action, OpenContactor, ShowScreen, StartTimer
from terminal.core.billing import Tariff
from terminal.core.events import Event, MeterSampled, Timer
from terminal.core.kiosk import Idle, Kiosk, Unavailable
from terminal.core.session import Session
from terminal.money import Money

Result = tuple[Kiosk, tuple[Action, ...]]


PILOT_FAULT = "pilot_error"  # control pilot in state E or F
WELDED = "contactor_welded"
FAILED_TO_CLOSE = "contactor_failed_to_close"
METER_FAULT = "meter"
MS_PER_HOUR = 3_600_000  # W * ms per Wh


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
