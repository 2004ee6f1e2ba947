"""The session state machine: `step(kiosk, event) -> (kiosk, actions)`.

Pure: no I/O, no clock reads, no randomness. Every (phase, event) pair is either a transition
in `TRANSITIONS` or listed by name in `IGNORED`; a test checks the table is total, and the state
diagram in docs/state-machine.md is generated from it. The handlers the table names live in
`terminal/core/handlers/`, by what they decide.

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

from collections.abc import Callable

from terminal.core.events import (
    AuthorizationAnswered,
    CardPresented,
    CardUnreadable,
    ContactorChecked,
    CostLimitSet,
    CurrentLimited,
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
    TimerFired,
    VehicleStateChanged,
    WebPaymentAuthorized,
    WebPaymentStarted,
)
from terminal.core.handlers.authorizing import _answered
from terminal.core.handlers.base import Result
from terminal.core.handlers.boot import _powered_up
from terminal.core.handlers.charging import (
    _cost_limit_set,
    _current_limited,
    _increment_answered,
    _sample_charging,
)
from terminal.core.handlers.ending import (
    _link_code_issued,
    _meter_failed_finishing,
    _sample_finishing,
    _tap_in_session,
)
from terminal.core.handlers.faults import (
    _checked,
    _fault_cleared,
    _fault_raised,
    _meter_failed,
    _out_of_service,
    _sample_at_rest,
)
from terminal.core.handlers.idle import (
    _card_unreadable,
    _pay_code_changed,
    _start_session,
    _tap_idle,
    _tap_unavailable,
    _tariff_changed,
    _web_payment,
    _web_payment_started,
)
from terminal.core.handlers.technician import (
    _diagnostic_finished,
    _diagnostic_requested,
    _signed_reading_now,
    _stop_requested,
    _technician,
)
from terminal.core.handlers.timers import (
    _authorizing_timer,
    _awaiting_timer,
    _charging_timer,
    _common_timer,
    _receipt_timer,
    _suspended_timer,
)
from terminal.core.handlers.vehicle import (
    _vehicle_at_rest,
    _vehicle_authorizing,
    _vehicle_awaiting,
    _vehicle_charging,
    _vehicle_suspended,
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

Handler = Callable[[Kiosk, Event], Result]


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
