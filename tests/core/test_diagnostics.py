"""The machine's side of the technician's device tests: what it refuses, when, and that a
result is answered to the console and reported to the gateway."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hardware.ports import PilotState
from terminal.core.actions import Answer, Report, RunDiagnostic
from terminal.core.billing import EnergyTariff
from terminal.core.events import (
    Diagnostic,
    DiagnosticFinished,
    DiagnosticRequested,
    TechnicianActed,
)
from terminal.core.kiosk import Booting, Charging, Idle, Kiosk, Rules, Unavailable
from terminal.core.machine import step
from terminal.core.session import Card, CardKind, Session, Status
from terminal.money import Money

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
RULES = Rules(
    tariff=EnergyTariff(name="Test AC", currency="EUR", per_kwh=Decimal("0.30")),
    hold=Money(5000, "EUR"),
    min_authorized=Money(500, "EUR"),
    station="Test Street 1",
    receipt_url="https://example.test/r",
    contactor_check_ms=120,
)
SESSION = Session(
    session_id="s-1",
    card=Card(kind=CardKind.PAYMENT, token="tok", brand="Visa", last4="0010"),
    hold=Money(5000, "EUR"),
    status=Status.CHARGING,
    started_at=T0,
    authorized=Money(5000, "EUR"),
)


def _request(test: Diagnostic, window_ms: int = 0) -> DiagnosticRequested:
    return DiagnosticRequested(request_id="r-1", test=test, window_ms=window_ms, at_ms=0, at=T0)


def test_relay_test_runs_when_idle_with_no_vehicle() -> None:
    kiosk = Kiosk(rules=RULES, phase=Idle())
    after, actions = step(kiosk, _request(Diagnostic.RELAY))
    assert after == kiosk
    assert actions == (RunDiagnostic(request_id="r-1", test=Diagnostic.RELAY, operate_ms=120),)


@pytest.mark.parametrize("pilot", [PilotState.B, PilotState.C])
def test_relay_test_is_refused_while_a_vehicle_is_connected(pilot: PilotState) -> None:
    kiosk = Kiosk(rules=RULES, phase=Idle(), pilot=pilot)
    after, actions = step(kiosk, _request(Diagnostic.RELAY))
    assert after == kiosk
    answer, report = actions
    assert isinstance(answer, Answer) and not answer.ok
    assert answer.text == f"relay test refused: a vehicle is connected (pilot {pilot.value})"
    assert report == Report(kind="diagnostic", detail=answer.text)


@pytest.mark.parametrize("test", [Diagnostic.RELAY, Diagnostic.READER])
def test_device_tests_are_refused_while_a_session_runs(test: Diagnostic) -> None:
    kiosk = Kiosk(
        rules=RULES, phase=Charging(session=SESSION), pilot=PilotState.C, contactor_closed=True
    )
    after, actions = step(kiosk, _request(test))
    assert after == kiosk
    assert isinstance(actions[0], Answer)
    assert actions[0].text.endswith("a session is running (Charging)")
    assert not any(isinstance(a, RunDiagnostic) for a in actions)


def test_read_only_tests_run_during_a_session_and_see_the_commanded_contactor() -> None:
    kiosk = Kiosk(
        rules=RULES, phase=Charging(session=SESSION), pilot=PilotState.C, contactor_closed=True
    )
    _, actions = step(kiosk, _request(Diagnostic.SELFTEST))
    assert actions == (
        RunDiagnostic(
            request_id="r-1", test=Diagnostic.SELFTEST, operate_ms=120, contactor_closed=True
        ),
    )


def test_reader_test_runs_out_of_service_and_carries_its_window() -> None:
    kiosk = Kiosk(rules=RULES, phase=Unavailable(), out_of_service=True, pilot=PilotState.B)
    _, actions = step(kiosk, _request(Diagnostic.READER, window_ms=15_000))
    assert actions == (
        RunDiagnostic(request_id="r-1", test=Diagnostic.READER, operate_ms=120, window_ms=15_000),
    )


def test_nothing_runs_before_the_kiosk_is_up() -> None:
    _, actions = step(Kiosk(rules=RULES, phase=Booting()), _request(Diagnostic.METER))
    assert isinstance(actions[0], Answer)
    assert actions[0].text == "meter test refused: the kiosk is starting"


def test_a_finished_test_is_answered_and_reported_but_a_meter_read_only_answered() -> None:
    kiosk = Kiosk(rules=RULES, phase=Idle())
    done = DiagnosticFinished(
        request_id="r-2",
        test=Diagnostic.RELAY,
        passed=False,
        detail="open: feedback CLOSED",
        at_ms=0,
        at=T0,
    )
    assert step(kiosk, done)[1] == (
        Answer(request_id="r-2", ok=False, text="open: feedback CLOSED"),
        Report(kind="diagnostic", detail="relay fail: open: feedback CLOSED"),
    )
    meter = replace(done, test=Diagnostic.METER, passed=True, detail="1 Wh")
    assert step(kiosk, meter)[1] == (Answer(request_id="r-2", ok=True, text="1 Wh"),)


def test_technician_actions_are_reported_in_every_phase() -> None:
    acted = TechnicianActed(kind="security", detail="login_failed attempts=1", at_ms=0, at=T0)
    for kiosk in (
        Kiosk(rules=RULES),
        Kiosk(rules=RULES, phase=Charging(session=SESSION), contactor_closed=True),
    ):
        after, actions = step(kiosk, acted)
        assert after == kiosk
        assert actions == (Report(kind="security", detail="login_failed attempts=1"),)
