"""Faults in any phase: the contactor opens first, then the session ends, then the screen;
the contactor's feedback checked against its command (a weld or a failure to close is a fault);
a meter that fails or runs backwards; out of service."""

from __future__ import annotations

from dataclasses import replace

from terminal.core.actions import CheckContactor, Report
from terminal.core.events import (
    ContactorChecked,
    Event,
    FaultCleared,
    FaultRaised,
    MeterSampled,
    OutOfServiceChanged,
)
from terminal.core.handlers.base import FAILED_TO_CLOSE, METER_FAULT, WELDED, Result, _open, _rest
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


def _sample_at_rest(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, MeterSampled)
    if k.register_wh is not None and e.energy_wh < k.register_wh:
        return _fault(k, e, METER_FAULT)  # a register going backwards is a broken meter
    k = replace(k, register_wh=e.energy_wh)
    if METER_FAULT in k.faults:
        return _clear(k, e, METER_FAULT)
    return k, ()


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
