"""A web payment the operator's CSMS runs (OCPP 2.1 C25): NotifyWebPaymentStarted arrives as
`WebPaymentStarted`; the machine keeps the charger for that payment (its own screen, other
taps refused) until the CSMS's start (a `CardKind.WEB` card) or the timeout. Scenario walks
on the fake clock of `test_scenarios`."""

from __future__ import annotations

from datetime import timedelta

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import (
    AnswerStart,
    CancelTimer,
    Record,
    RequestAuthorization,
    StartTimer,
    Void,
)
from terminal.core.events import (
    CardPresented,
    CostLimitSet,
    FaultCleared,
    FaultRaised,
    Timer,
    WebPaymentAuthorized,
    WebPaymentStarted,
)
from terminal.core.kiosk import Authorizing, Charging, Idle, Unavailable
from terminal.core.session import Card, CardKind
from terminal.money import Money
from tests.core.test_scenarios import VISA, Walk, of, shown

WEB = Card(kind=CardKind.WEB, token="csms-payment-ref-1", brand="Web payment", last4="")
TIMEOUT_MS = 120_000


def started(walk: Walk, timeout_ms: int = TIMEOUT_MS) -> tuple[object, ...]:
    return walk.event(WebPaymentStarted, timeout_ms=timeout_ms)


def test_a_web_payment_keeps_the_charger_and_says_so() -> None:
    walk = Walk()
    walk.boot()
    actions = started(walk)
    assert walk.kiosk.web_payment and isinstance(walk.kiosk.phase, Idle)
    assert isinstance(shown(actions)[-1], screens.WebPayment)
    [timer] = of(StartTimer, actions)
    assert (timer.timer, timer.after_ms) == (Timer.WEB_PAYMENT, TIMEOUT_MS)
    frame = screens.frame_for(screens.WebPayment())
    assert frame.name == "web-payment" and frame.title == "Payment in progress"


def test_a_tap_during_the_web_payment_is_refused_and_the_charger_stays_kept() -> None:
    walk = Walk()
    walk.boot()
    started(walk)
    actions = walk.tap(VISA)
    assert not of(Record, actions) and not of(RequestAuthorization, actions)
    assert shown(actions) == [screens.Notice(kind="reserved")]
    assert walk.kiosk.web_payment and isinstance(walk.kiosk.phase, Idle)
    # When the notice is over, the web payment's screen is back (not the price).
    assert isinstance(shown(walk.timer(Timer.NOTICE))[-1], screens.WebPayment)


def test_the_csms_start_for_the_payment_starts_the_session() -> None:
    walk = Walk()
    walk.boot()
    started(walk)
    actions = walk.event(CardPresented, card=WEB, session_id="csms-web-0001")
    assert CancelTimer(timer=Timer.WEB_PAYMENT) in actions
    assert not walk.kiosk.web_payment
    assert isinstance(walk.kiosk.phase, Authorizing)
    [ask] = of(RequestAuthorization, actions)
    assert ask.card == WEB and ask.amount == walk.kiosk.rules.hold
    walk.answer()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)
    assert isinstance(walk.kiosk.phase, Charging)


def test_without_a_start_the_timeout_frees_the_charger() -> None:
    walk = Walk()
    walk.boot()
    started(walk)
    actions = walk.timer(Timer.WEB_PAYMENT, TIMEOUT_MS)
    assert not walk.kiosk.web_payment
    assert isinstance(shown(actions)[-1], screens.Idle)
    walk.tap(VISA)  # anyone may start now
    assert isinstance(walk.kiosk.phase, Authorizing)


def test_a_web_payment_while_busy_or_unavailable_changes_nothing() -> None:
    walk = Walk()
    walk.charging()
    before = walk.kiosk
    assert started(walk) == () and walk.kiosk == before
    faulted = Walk()
    faulted.boot()
    faulted.event(FaultRaised, fault="rcd_trip")
    assert isinstance(faulted.kiosk.phase, Unavailable)
    assert started(faulted) == () and not faulted.kiosk.web_payment


def test_a_fault_during_the_web_payment_shows_out_of_order_then_the_payment_again() -> None:
    walk = Walk()
    walk.boot()
    started(walk)
    walk.event(FaultRaised, fault="rcd_trip")
    assert isinstance(walk.kiosk.phase, Unavailable)
    actions = walk.event(FaultCleared, fault="rcd_trip")
    assert isinstance(shown(actions)[-1], screens.WebPayment)


def test_the_gateway_pay_by_phone_is_refused_while_a_csms_web_payment_keeps_the_charger() -> None:
    walk = Walk()
    walk.boot()
    started(walk)
    at = walk.stamp(10)

    actions = walk.send(
        WebPaymentAuthorized(
            command_id="c-1",
            session_id="gw-web-1",
            cost_limit=Money(1000, "EUR"),
            expires_at=at["at"] + timedelta(minutes=5),
            **at,
        )
    )
    [answer] = of(AnswerStart, actions)
    assert (answer.started, answer.reason) == (False, "busy")
    assert walk.kiosk.web_payment and isinstance(walk.kiosk.phase, Idle)


# -- the CSMS's cost limit (TransactionEventResponse transactionLimit.maxCost) ---------------


def test_a_cost_limit_from_the_csms_lowers_the_cap_and_charging_stops_at_it() -> None:
    walk = Walk()
    walk.charging()
    session = walk.kiosk.session
    assert session is not None and session.authorized == walk.kiosk.rules.hold
    limit = Money(300, "EUR")
    actions = walk.event(CostLimitSet, session_id=session.session_id, limit=limit)
    phase = walk.kiosk.phase
    assert isinstance(phase, Charging) and phase.session.authorized == limit
    assert of(Record, actions)[0].session.authorized == limit
    for _ in range(200):  # 11 kW at 0.39 EUR/kWh: about 1.2 EUR an 11 minutes
        walk.sample(3_000)
        if not isinstance(walk.kiosk.phase, Charging):
            break
    session = walk.kiosk.session
    assert session is not None and session.end_reason == "cost_cap"
    assert session.amount is None or session.amount <= limit


def test_a_cost_limit_above_the_cap_or_for_another_session_changes_nothing() -> None:
    walk = Walk()
    walk.charging()
    session = walk.kiosk.session
    assert session is not None
    before = walk.kiosk
    above = session.authorized + Money(100, "EUR")  # type: ignore[operator]
    assert walk.event(CostLimitSet, session_id=session.session_id, limit=above) == ()
    assert walk.event(CostLimitSet, session_id="another", limit=Money(1, "EUR")) == ()
    assert walk.kiosk == before


def test_a_cost_limit_under_the_minimum_before_energy_releases_the_hold() -> None:
    walk = Walk()
    walk.boot()
    walk.tap(VISA)
    walk.answer()
    session = walk.kiosk.session
    assert session is not None
    actions = walk.event(CostLimitSet, session_id=session.session_id, limit=Money(1, "EUR"))
    assert isinstance(walk.kiosk.phase, Idle)
    [void] = of(Void, actions)
    assert void.session_id == session.session_id
