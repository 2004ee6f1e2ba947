"""A session paid on the phone (the kiosk's QR code): the gateway's start command arrives as
`WebPaymentAuthorized`; the machine records the session and answers "started", and goes on as
an approved hold with the cost limit as its cap only once the gateway took that answer (it
refuses it once it released the hold), or answers why not. Scenario walks on the fake clock
of `test_scenarios`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import (
    AnswerStart,
    Capture,
    CloseContactor,
    OfferEnergy,
    Record,
    ShowScreen,
    Void,
)
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    FaultRaised,
    StopRequested,
    Timer,
    WebPaymentAuthorized,
)
from terminal.core.kiosk import Authorizing, AwaitingVehicle, Charging, Idle, Receipt, Rules
from terminal.core.session import CardKind, Status
from terminal.money import Money
from tests.core.test_scenarios import RULES, Walk, of, settlements, shown

LIFETIME = timedelta(minutes=5)


def paid(
    walk: Walk,
    *,
    minor: int = 2000,
    currency: str = "EUR",
    session_id: str = "web-session-0001",
    expires_in: timedelta = LIFETIME,
    confirmed: bool = True,
) -> tuple[object, ...]:
    """The start command; with `confirmed`, the gateway then takes the answer "started"
    (the sender's `AuthorizationAnswered`, approved). The actions of both."""
    at = walk.stamp(10)
    actions = walk.send(
        WebPaymentAuthorized(
            command_id=f"command-{session_id}",
            session_id=session_id,
            cost_limit=Money(minor, currency),
            expires_at=at["at"] + expires_in,
            brand="Visa",
            last4="4242",
            **at,
        )
    )
    if not confirmed or not isinstance(walk.kiosk.phase, Authorizing):
        return actions
    return actions + confirm(walk, session_id)


def confirm(
    walk: Walk, session_id: str = "web-session-0001", outcome: AuthOutcome = AuthOutcome.APPROVED
) -> tuple[object, ...]:
    return walk.event(AuthorizationAnswered, session_id=session_id, outcome=outcome)


def answer_of(actions: tuple[object, ...]) -> AnswerStart:
    (answer,) = [a for a in actions if isinstance(a, AnswerStart)]
    return answer


def test_a_web_payment_offers_no_energy_until_the_gateway_took_the_answer_started() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)  # the car asks for energy already
    actions = paid(walk, confirmed=False)
    assert isinstance(walk.kiosk.phase, Authorizing)
    kinds = [type(a) for a in actions]
    assert kinds.index(Record) < kinds.index(AnswerStart)
    assert of(Record, actions)[0].session.status is Status.AUTHORIZING
    assert OfferEnergy not in kinds and CloseContactor not in kinds
    # No answer yet (the gateway unreachable): still waiting, still nothing offered.
    assert confirm(walk, outcome=AuthOutcome.NO_ANSWER) == ()
    actions = confirm(walk)
    assert isinstance(walk.kiosk.phase, Charging)
    assert CloseContactor in [type(a) for a in actions]


def test_a_started_answer_the_gateway_refuses_never_starts_and_releases_the_hold() -> None:
    """The gateway released the hold (the start expired while the kiosk was away) and so
    refuses "started": nothing is offered, the session is abandoned, its void queued."""
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    paid(walk, confirmed=False)
    actions = confirm(walk, outcome=AuthOutcome.DECLINED)
    assert isinstance(walk.kiosk.phase, Idle)
    kinds = [type(a) for a in actions]
    assert OfferEnergy not in kinds and CloseContactor not in kinds
    (void,) = settlements(actions)
    assert isinstance(void, Void) and void.session_id == "web-session-0001"
    assert of(Record, actions)[-1].session.end_reason == "start_refused"


def test_a_started_answer_never_taken_in_time_abandons_the_session_and_its_hold() -> None:
    walk = Walk()
    walk.boot()
    paid(walk, confirmed=False)
    actions = walk.timer(Timer.AUTHORIZATION, after_ms=RULES.authorization_timeout_ms)
    assert isinstance(walk.kiosk.phase, Idle)  # never on the offline policy
    (void,) = settlements(actions)
    assert isinstance(void, Void) and void.session_id == "web-session-0001"
    assert of(Record, actions)[-1].session.end_reason == "start_unconfirmed"
    assert OfferEnergy not in [type(a) for a in actions]
    confirm(walk)  # taken late: the session is gone, its void queued behind the answer
    assert isinstance(walk.kiosk.phase, Idle)


def test_a_web_payment_at_idle_starts_a_session_capped_at_the_cost_limit() -> None:
    walk = Walk()
    walk.boot()
    actions = paid(walk, minor=2000)
    phase = walk.kiosk.phase
    assert isinstance(phase, AwaitingVehicle)
    session = phase.session
    assert session.session_id == "web-session-0001"
    assert session.card.kind is CardKind.WEB
    assert session.authorized == session.hold == Money(2000, "EUR")
    assert session.start_register_wh == walk.register_wh
    answer = answer_of(actions)
    assert (answer.started, answer.command_id) == (True, "command-web-session-0001")
    # The session is on record before the answer "started" is queued; authorized once the
    # gateway took it.
    kinds = [type(a) for a in actions]
    assert kinds.index(Record) < kinds.index(AnswerStart)
    assert of(Record, actions)[-1].session.status is Status.AUTHORIZED
    assert OfferEnergy in kinds
    assert isinstance(shown(actions)[-1], screens.PlugIn)


def test_a_web_session_stops_at_its_cost_limit_and_captures_no_more() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)
    actions = paid(walk, minor=600)  # 6.00 EUR at 0.30 EUR/kWh: 20 kWh
    assert isinstance(walk.kiosk.phase, Charging)
    assert CloseContactor in [type(a) for a in actions]
    captured: list[Capture] = []
    for _ in range(40):
        actions = walk.sample(1_000)
        captured += of(Capture, actions)
        if not isinstance(walk.kiosk.phase, Charging):
            break
    if not captured:
        captured += of(Capture, walk.sample(0))
    (capture,) = captured
    assert capture.session_id == "web-session-0001"
    assert capture.amount <= Money(600, "EUR")
    assert capture.amount.minor > 0


def test_a_stop_from_the_phone_ends_the_web_session_and_captures_what_was_delivered() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)
    paid(walk)
    walk.sample(1_000)
    walk.sample(1_000)
    walk.event(StopRequested, session_id="web-session-0001")
    actions = walk.pilot(PilotState.B)  # the vehicle ends the load when the PWM goes off
    actions += walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    (capture,) = of(Capture, actions)
    assert capture.amount == Money(60, "EUR")  # 2 kWh at 0.30 EUR


def test_a_web_session_nobody_plugs_in_is_released_at_the_plug_in_timeout() -> None:
    walk = Walk()
    walk.boot()
    paid(walk)
    actions = walk.timer(Timer.PLUG_IN, after_ms=RULES.plug_in_timeout_ms)
    assert isinstance(walk.kiosk.phase, Idle)
    (void,) = settlements(actions)
    assert isinstance(void, Void) and void.session_id == "web-session-0001"


def test_a_web_payment_while_a_session_runs_is_answered_busy_and_changes_nothing() -> None:
    walk = Walk()
    walk.charging()
    before = walk.kiosk
    actions = paid(walk)
    assert walk.kiosk == before
    assert actions == (
        AnswerStart(
            command_id="command-web-session-0001",
            session_id="web-session-0001",
            started=False,
            reason="busy",
        ),
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"expires_in": timedelta(0)}, "expired"),
        ({"expires_in": -timedelta(seconds=1)}, "expired"),
        ({"minor": 5001}, "over_limit"),
        ({"minor": 499}, "under_minimum"),
        ({"currency": "CHF"}, "currency"),
    ],
)
def test_a_web_payment_the_kiosk_may_not_take_is_refused_with_its_reason(
    change: dict[str, object], reason: str
) -> None:
    walk = Walk()
    walk.boot()
    actions = paid(walk, **change)  # type: ignore[arg-type]
    assert isinstance(walk.kiosk.phase, Idle)
    answer = answer_of(actions)
    assert (answer.started, answer.reason) == (False, reason)
    assert not of(Record, actions) and not of(ShowScreen, actions)


def test_a_web_payment_out_of_service_or_before_boot_is_not_started() -> None:
    walk = Walk()
    assert answer_of(paid(walk)).reason == "starting"
    walk.boot()
    walk.event(FaultRaised, fault="rcd")
    assert answer_of(paid(walk, session_id="web-session-0002")).reason == "unavailable"


def test_a_web_payment_on_the_receipt_screen_starts_the_next_session() -> None:
    walk = Walk()
    walk.charging()
    walk.stop_by_card()
    walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    actions = paid(walk)
    assert answer_of(actions).started
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)


def test_the_cost_limit_may_reach_the_increment_ceiling() -> None:
    rules = Rules(
        tariff=RULES.tariff,
        hold=Money(2000, "EUR"),
        min_authorized=Money(500, "EUR"),
        station="s",
        receipt_url="https://example.test/r",
        increment=Money(1000, "EUR"),
        ceiling=Money(8000, "EUR"),
    )
    walk = Walk(rules)
    walk.boot()
    assert answer_of(paid(walk, minor=8000)).started
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)
    assert walk.kiosk.phase.session.authorized == Money(8000, "EUR")
