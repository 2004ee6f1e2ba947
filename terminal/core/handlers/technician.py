"""Requests from outside the session's own flow: the technician's device tests (refused while
they would disturb a session), a signed reading on request, a stop from afar, a technician's
action reported."""

from __future__ import annotations

from hardware.ports import PilotState
from terminal.core.actions import Answer, Report, RunDiagnostic, TakeSignedReading
from terminal.core.events import (
    Diagnostic,
    DiagnosticFinished,
    DiagnosticRequested,
    Event,
    StopRequested,
    TechnicianActed,
)
from terminal.core.handlers.base import Result, _rest
from terminal.core.handlers.ending import _abandon, _release
from terminal.core.kiosk import (
    AwaitingVehicle,
    Booting,
    Charging,
    Idle,
    Kiosk,
    Receipt,
    Suspended,
    Unavailable,
)

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


def _technician(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, TechnicianActed)
    return k, (Report(kind=e.kind, detail=e.detail),)
