"""The control pilot (IEC 61851-1 states A-F) in each phase: tracked, E/F a fault; C/D with
a hold closes the contactor, C->B opens it at once (suspended), A ends the session."""

from __future__ import annotations

from dataclasses import replace

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import Action, Record, Report, ShowScreen, StartTimer
from terminal.core.events import Event, Timer, VehicleStateChanged
from terminal.core.handlers.base import PILOT_FAULT, Result, _cost, _idle_screen, _open, _rest
from terminal.core.handlers.charging import _begin_charging, _may_charge, _parking_passes_cap
from terminal.core.handlers.ending import _abandon, _stop
from terminal.core.kiosk import (
    Authorizing,
    AwaitingVehicle,
    Charging,
    Idle,
    Kiosk,
    Suspended,
    Unavailable,
)
from terminal.core.session import Status


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
