"""Scenario walks through the session machine: hand-made events on a fake clock, asserting
both the state the machine ends in and the actions it gives, in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import (
    Action,
    Capture,
    CloseContactor,
    OfferEnergy,
    OpenContactor,
    Record,
    Report,
    RequestAuthorization,
    ShowScreen,
    StartTimer,
    Void,
    WithdrawEnergy,
)
from terminal.core.billing import EnergyTariff
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    CardPresented,
    ContactorChecked,
    CurrentLimited,
    Event,
    FaultRaised,
    IncrementAnswered,
    MeterSampled,
    PoweredUp,
    Stamp,
    StopRequested,
    Timer,
    TimerFired,
    VehicleStateChanged,
)
from terminal.core.handlers.base import WELDED
from terminal.core.kiosk import (
    Authorizing,
    AwaitingVehicle,
    Charging,
    Finishing,
    Idle,
    Kiosk,
    Receipt,
    Rules,
    Suspended,
    Unavailable,
)
from terminal.core.machine import step
from terminal.core.session import Card, CardKind, Session, Status
from terminal.money import Money

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
EUR = "EUR"
START_REGISTER_WH = 10_000

# 0.30 EUR per kWh, no VAT: 1 kWh costs 30 cents, so amounts are easy to follow.
TARIFF = EnergyTariff(name="Test AC", currency=EUR, per_kwh=Decimal("0.30"))
RULES = Rules(
    tariff=TARIFF,
    hold=Money(5000, EUR),
    min_authorized=Money(500, EUR),
    station="Test Street 1",
    receipt_url="https://example.test/r",
)

VISA = Card(kind=CardKind.PAYMENT, token="tok-visa-00000001", brand="Visa", last4="0010")
OTHER = Card(kind=CardKind.PAYMENT, token="tok-mc-000000002", brand="Mastercard", last4="0044")


class Walk:
    """A kiosk driven one event at a time on a fake clock that only moves forward."""

    def __init__(self, rules: Rules = RULES) -> None:
        self.kiosk = Kiosk(rules=rules)
        self.ms = 0
        self.register_wh = START_REGISTER_WH
        self.ids = 0

    def stamp(self, after_ms: int) -> Stamp:
        self.ms += after_ms
        return Stamp(at_ms=self.ms, at=T0 + timedelta(milliseconds=self.ms))

    def send(self, event: Event) -> tuple[Action, ...]:
        self.kiosk, actions = step(self.kiosk, event)
        return actions

    def event(self, kind: type[Event], after_ms: int = 10, **fields: Any) -> tuple[Action, ...]:
        return self.send(kind(**self.stamp(after_ms), **fields))

    # -- the verbs of a walk --------------------------------------------------------------
    def boot(self, unsettled: tuple[Session, ...] = ()) -> tuple[Action, ...]:
        return self.event(PoweredUp, register_wh=self.register_wh, unsettled=unsettled)

    def tap(self, card: Card = VISA) -> tuple[Action, ...]:
        self.ids += 1
        return self.event(CardPresented, card=card, session_id=f"session-{self.ids:04d}")

    def answer(
        self, outcome: AuthOutcome = AuthOutcome.APPROVED, amount: Money | None = None
    ) -> tuple[Action, ...]:
        session = self.kiosk.session
        assert session is not None
        if outcome is AuthOutcome.APPROVED and amount is None:
            amount = session.hold
        return self.event(
            AuthorizationAnswered, session_id=session.session_id, outcome=outcome, amount=amount
        )

    def pilot(self, state: PilotState) -> tuple[Action, ...]:
        return self.event(VehicleStateChanged, state=state)

    def sample(
        self, add_wh: int, after_ms: int = 1_000, power_w: int = 11_000
    ) -> tuple[Action, ...]:
        self.register_wh += add_wh
        return self.event(MeterSampled, after_ms, energy_wh=self.register_wh, power_w=power_w)

    def timer(self, timer: Timer, after_ms: int = 10) -> tuple[Action, ...]:
        return self.event(TimerFired, after_ms, timer=timer)

    def stop_by_card(self, card: Card = VISA) -> tuple[Action, ...]:
        """Tap to stop, and the vehicle ends the load when the PWM goes off (C→B)."""
        self.tap(card)
        return self.pilot(PilotState.B)

    def charging(self, card: Card = VISA) -> None:
        """Boot, plug in and ask for energy, tap, approve: the contactor is closed."""
        self.boot()
        self.pilot(PilotState.B)
        self.pilot(PilotState.C)
        self.tap(card)
        self.answer()
        assert isinstance(self.kiosk.phase, Charging)


def of(kind: type[Action], actions: tuple[Action, ...]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def settlements(actions: tuple[Action, ...]) -> list[Capture | Void]:
    return [a for a in actions if isinstance(a, Capture | Void)]


def shown(actions: tuple[Action, ...]) -> list[screens.Screen]:
    return [a.screen for a in actions if isinstance(a, ShowScreen)]


def test_boot_opens_the_contactor_before_anything_else() -> None:
    walk = Walk()
    actions = walk.boot()
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Idle)
    assert walk.kiosk.contactor_closed is False
    assert walk.kiosk.register_wh == START_REGISTER_WH
    assert isinstance(shown(actions)[-1], screens.Idle)


def test_tap_records_the_session_then_requests_the_hold() -> None:
    walk = Walk()
    walk.boot()
    actions = walk.tap()
    assert isinstance(walk.kiosk.phase, Authorizing)
    money = [a for a in actions if isinstance(a, Record | RequestAuthorization)]
    assert [type(a) for a in money] == [Record, RequestAuthorization]
    record, request = money
    assert record.session.status is Status.AUTHORIZING
    assert record.session.session_id == request.session_id == "session-0001"
    assert request.amount == RULES.hold
    assert request.card == VISA
    assert isinstance(shown(actions)[-1], screens.Authorizing)


def test_approval_with_vehicle_already_in_c_closes_the_contactor() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)
    walk.tap()
    actions = walk.answer()
    assert isinstance(walk.kiosk.phase, Charging)
    assert walk.kiosk.contactor_closed is True
    session = walk.kiosk.phase.session
    assert session.authorized == RULES.hold
    assert session.start_register_wh == START_REGISTER_WH
    kinds = [type(a) for a in actions]
    assert CloseContactor in kinds
    # The journal knows the session is charging before the relay closes.
    assert kinds.index(Record) < kinds.index(CloseContactor)
    assert of(Record, actions)[-1].session.status is Status.CHARGING


def test_approval_before_plug_in_waits_for_the_vehicle() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    actions = walk.answer()
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)
    assert not of(CloseContactor, actions)
    walk.pilot(PilotState.B)
    assert walk.kiosk.contactor_closed is False
    actions = walk.pilot(PilotState.C)
    assert isinstance(walk.kiosk.phase, Charging)
    assert of(CloseContactor, actions)


def test_vehicle_pausing_c_to_b_opens_the_contactor_at_once() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(500)
    actions = walk.pilot(PilotState.B)
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Suspended)
    assert walk.kiosk.contactor_closed is False
    assert not settlements(actions)  # the session stays open while the vehicle pauses
    actions = walk.pilot(PilotState.C)
    assert isinstance(walk.kiosk.phase, Charging)
    assert of(CloseContactor, actions)


def test_fault_while_charging_opens_the_contactor_first() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(1_000)
    actions = walk.event(FaultRaised, fault="rcd_tripped")
    assert isinstance(actions[0], OpenContactor)
    assert walk.kiosk.contactor_closed is False
    assert "rcd_tripped" in walk.kiosk.faults
    assert isinstance(walk.kiosk.phase, Finishing)
    # The final reading settles the session, and the kiosk is then out of order.
    actions = walk.sample(0)
    assert [type(a) for a in settlements(actions)] == [Capture]
    walk.timer(Timer.RECEIPT)
    assert isinstance(walk.kiosk.phase, Unavailable)


def test_pilot_error_while_charging_opens_the_contactor_first() -> None:
    walk = Walk()
    walk.charging()
    actions = walk.pilot(PilotState.E)
    assert isinstance(actions[0], OpenContactor)
    assert walk.kiosk.contactor_closed is False
    assert isinstance(walk.kiosk.phase, Finishing)


def test_a_different_card_cannot_stop_the_session() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(2_000)
    actions = walk.tap(OTHER)
    assert isinstance(walk.kiosk.phase, Charging)
    assert walk.kiosk.contactor_closed is True
    assert shown(actions) == [screens.Notice(kind="in-use")]
    assert not of(OpenContactor, actions)
    assert not settlements(actions)


def test_the_same_card_stops_the_session_and_it_is_captured() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(2_000)
    actions = walk.stop_by_card(VISA)
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "card"
    actions = walk.sample(10)  # the final reading, a little more than before the stop
    assert isinstance(walk.kiosk.phase, Receipt)
    (capture,) = settlements(actions)
    assert isinstance(capture, Capture)
    assert capture.energy_wh == 2_010
    assert capture.amount == Money(60, EUR)  # 2.01 kWh at 0.30 = 0.603, half-up once
    assert of(Record, actions)[-1].session.status is Status.CAPTURING


def test_a_session_without_energy_is_voided_never_captured() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(0)
    walk.stop_by_card(VISA)
    actions = walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    assert [type(a) for a in settlements(actions)] == [Void]
    assert of(Record, actions)[-1].session.status is Status.VOIDING
    receipt = shown(actions)[-1]
    assert isinstance(receipt, screens.Receipt)
    assert receipt.total == Money(0, EUR)


def test_a_session_fee_without_energy_is_still_voided() -> None:
    rules = replace(RULES, tariff=replace(TARIFF, session_fee=Decimal("1.00")))
    walk = Walk(rules)
    walk.charging()
    walk.pilot(PilotState.A)  # unplugged before any energy flowed
    actions = walk.sample(0)
    assert [type(a) for a in settlements(actions)] == [Void]


def test_partial_approval_lowers_the_cap() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    actions = walk.answer(amount=Money(2500, EUR))
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)
    assert walk.kiosk.phase.session.authorized == Money(2500, EUR)
    assert shown(actions)[-1] == screens.PlugIn(
        authorized=Money(2500, EUR), connected=False, partial=True
    )
    walk.pilot(PilotState.B)
    actions = walk.pilot(PilotState.C)
    charging = shown(actions)[-1]
    assert isinstance(charging, screens.Charging)
    assert charging.cap == Money(2500, EUR)


def test_approval_above_the_hold_is_held_to_the_hold() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    walk.answer(amount=Money(9999, EUR))
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)
    assert walk.kiosk.phase.session.authorized == RULES.hold


def test_partial_approval_below_the_minimum_is_voided() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    actions = walk.answer(amount=Money(499, EUR))
    assert isinstance(walk.kiosk.phase, Idle)
    (void,) = settlements(actions)
    assert isinstance(void, Void)
    assert void.reason == "partial_too_low"


def test_charging_stops_at_the_cost_cap() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    walk.answer(amount=Money(600, EUR))  # 6.00 EUR buys 20 kWh
    cap = Money(600, EUR)
    for _ in range(100):
        actions = walk.sample(1_500)  # 1.5 kWh (45 cents) per sample
        phase = walk.kiosk.phase
        if not isinstance(phase, Charging):
            break
        cost = phase.session.meterage.total() if phase.session.meterage else Money(0, EUR)
        assert cost <= cap
    else:
        raise AssertionError("charging never stopped")
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "cost_cap"
    actions = walk.sample(0)
    (capture,) = settlements(actions)
    assert isinstance(capture, Capture)
    assert Money(0, EUR) < capture.amount <= cap
    assert capture.bill.total <= cap


def test_partial_approval_stops_charging_at_the_lower_cap() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    walk.answer(amount=Money(2500, EUR))
    while isinstance(walk.kiosk.phase, Charging):
        walk.sample(5_000)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "cost_cap"
    (capture,) = settlements(walk.sample(0))
    assert isinstance(capture, Capture)
    assert capture.amount <= Money(2500, EUR)


def test_welded_contactor_is_a_fault_that_makes_the_kiosk_unavailable() -> None:
    walk = Walk()
    walk.boot()
    actions = walk.event(ContactorChecked, closed=True)  # commanded open, reads closed
    assert isinstance(actions[0], OpenContactor)
    assert WELDED in walk.kiosk.faults
    assert isinstance(walk.kiosk.phase, Unavailable)
    assert isinstance(shown(actions)[-1], screens.Unavailable)
    actions = walk.tap()
    assert isinstance(walk.kiosk.phase, Unavailable)
    assert not of(RequestAuthorization, actions)
    assert shown(actions) == [screens.Notice(kind="out-of-order")]


def test_welded_contactor_after_a_stop_faults_the_kiosk() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(1_000)
    walk.stop_by_card()
    walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    actions = walk.event(ContactorChecked, closed=True)
    assert isinstance(actions[0], OpenContactor)
    assert WELDED in walk.kiosk.faults
    walk.timer(Timer.RECEIPT)
    assert isinstance(walk.kiosk.phase, Unavailable)


def test_plug_in_timeout_voids_the_hold() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    walk.answer()
    assert isinstance(walk.kiosk.phase, AwaitingVehicle)
    actions = walk.timer(Timer.PLUG_IN, after_ms=RULES.plug_in_timeout_ms)
    assert isinstance(walk.kiosk.phase, Idle)
    (void,) = settlements(actions)
    assert void == Void(session_id="session-0001", reason="plug_in_timeout")
    assert of(Record, actions)[-1].session.status is Status.VOIDING
    assert screens.Notice(kind="timed-out") in shown(actions)


def test_authorization_timeout_voids_and_says_no_answer() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    actions = walk.timer(Timer.AUTHORIZATION, after_ms=RULES.authorization_timeout_ms)
    assert isinstance(walk.kiosk.phase, Idle)
    (void,) = settlements(actions)
    assert void == Void(session_id="session-0001", reason="no_answer")
    assert screens.NoAnswer() in shown(actions)
    # The approval that arrives late holds nothing here: its void is already queued.
    late = walk.event(
        AuthorizationAnswered,
        session_id="session-0001",
        outcome=AuthOutcome.APPROVED,
        amount=RULES.hold,
    )
    assert late == ()
    assert isinstance(walk.kiosk.phase, Idle)


def test_decline_settles_nothing_and_returns_to_idle() -> None:
    walk = Walk()
    walk.boot()
    walk.tap()
    actions = walk.answer(AuthOutcome.DECLINED)
    assert isinstance(walk.kiosk.phase, Idle)
    assert not settlements(actions)
    assert of(Record, actions)[-1].session.status is Status.DECLINED


def _unsettled_charging() -> Session:
    return Session(
        session_id="crash-charging",
        card=VISA,
        hold=RULES.hold,
        status=Status.CHARGING,
        started_at=T0 - timedelta(hours=1),
        authorized=RULES.hold,
        start_register_wh=START_REGISTER_WH - 4_000,
        energy_wh=3_000,
        charging_started_at=T0 - timedelta(minutes=55),
        last_sample_at=T0 - timedelta(minutes=5),
    )


def _unsettled_authorizing() -> Session:
    return Session(
        session_id="crash-authorizing",
        card=OTHER,
        hold=RULES.hold,
        status=Status.AUTHORIZING,
        started_at=T0 - timedelta(minutes=2),
    )


def test_restart_settles_each_unsettled_session_exactly_once() -> None:
    walk = Walk()
    actions = walk.boot(unsettled=(_unsettled_charging(), _unsettled_authorizing()))
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Idle)
    settled = settlements(actions)
    assert sorted((type(a).__name__, a.session_id) for a in settled) == [
        ("Capture", "crash-charging"),
        ("Void", "crash-authorizing"),
    ]
    capture = next(a for a in settled if isinstance(a, Capture))
    # The register now is the final reading: 4 kWh since the hold, more than journaled.
    assert capture.energy_wh == 4_000
    assert capture.amount == Money(120, EUR)
    # Each settlement is journaled before it is queued.
    for settlement in settled:
        before = actions[: actions.index(settlement)]
        records = [
            a.session
            for a in before
            if isinstance(a, Record) and a.session.session_id == settlement.session_id
        ]
        assert records, f"{settlement.session_id} queued before it was journaled"
        assert records[-1].status in (Status.CAPTURING, Status.VOIDING)


def test_restart_voids_a_charging_session_that_delivered_nothing() -> None:
    walk = Walk()
    session = replace(_unsettled_charging(), start_register_wh=START_REGISTER_WH, energy_wh=0)
    actions = walk.boot(unsettled=(session,))
    assert [(type(a), a.session_id) for a in settlements(actions)] == [(Void, "crash-charging")]


# -- IEC 61851-1 control: the pilot's PWM offers energy only to an authorized session -----------


def test_no_energy_is_offered_from_power_up_until_a_session_is_authorized() -> None:
    walk = Walk()
    actions = walk.boot()
    assert of(WithdrawEnergy, actions), "the PWM goes off at power-up"
    walk.pilot(PilotState.B)  # a plug-first car waits in B: nothing is on offer
    actions = walk.tap()
    assert not of(OfferEnergy, actions) and not of(CloseContactor, actions)
    actions = walk.answer()
    assert of(OfferEnergy, actions) == [OfferEnergy(current_a=RULES.max_current_a)]
    assert not of(CloseContactor, actions)
    actions = walk.pilot(PilotState.C)  # the car answers the PWM
    assert of(CloseContactor, actions)
    assert isinstance(walk.kiosk.phase, Charging)


def test_a_declined_or_abandoned_session_never_offers_energy() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.tap()
    actions = walk.answer(AuthOutcome.DECLINED)
    assert not of(OfferEnergy, actions)
    walk.timer(Timer.NOTICE)
    walk.tap()
    walk.answer()
    actions = walk.timer(Timer.PLUG_IN)  # offered, but the car never asked: withdrawn again
    assert of(WithdrawEnergy, actions)


def test_a_normal_stop_turns_the_pwm_off_then_opens_after_c_to_b() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(1_000)
    actions = walk.tap()
    assert actions[0] == WithdrawEnergy()
    assert StartTimer(timer=Timer.PILOT_RELEASE, after_ms=RULES.pilot_release_ms) in actions
    assert not of(OpenContactor, actions), "no load is broken: the vehicle ends it"
    assert walk.kiosk.contactor_closed
    assert isinstance(walk.kiosk.phase, Charging) and walk.kiosk.phase.stopping == "card"
    assert walk.tap() == (), "a second tap while stopping means nothing"
    walk.sample(5)  # energy still counted until the load ends
    actions = walk.pilot(PilotState.B)
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "card"
    walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    assert walk.kiosk.phase.session.energy_wh == 1_005


def test_a_car_that_stays_in_c_gets_the_contactor_opened_at_the_timeout_and_it_is_reported() -> (
    None
):
    walk = Walk()
    walk.charging()
    walk.sample(1_000)
    walk.tap()
    actions = walk.timer(Timer.PILOT_RELEASE, after_ms=RULES.pilot_release_ms)
    assert isinstance(actions[0], OpenContactor)
    assert Report(kind="pilot_release_timeout", detail="card") in actions
    assert isinstance(walk.kiosk.phase, Finishing)
    assert not walk.kiosk.contactor_closed


def test_a_fault_while_stopping_opens_the_contactor_at_once() -> None:
    walk = Walk()
    walk.charging()
    walk.tap()
    actions = walk.event(FaultRaised, fault="rcd_trip")
    assert isinstance(actions[0], OpenContactor)
    assert of(WithdrawEnergy, actions)
    assert not walk.kiosk.contactor_closed


def test_the_cost_cap_still_stops_at_once_while_the_pwm_is_off() -> None:
    walk = Walk()
    walk.charging()
    walk.tap()
    actions = walk.sample(100_000)  # far past any hold
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing | Receipt)


def test_the_cost_cap_is_a_normal_stop_pwm_off_then_open_after_c_to_b() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    walk.answer(amount=Money(600, EUR))  # 6.00 EUR buys 20 kWh at 0.30
    cap = Money(600, EUR)
    for _ in range(300):
        actions = walk.sample(100)  # 0.1 kWh (3 cents) a second
        if of(WithdrawEnergy, actions):
            break
    else:
        raise AssertionError("the cap never stopped the session")
    # The PWM goes off a sample and the release time before the cap: no load is broken.
    assert actions[0] == WithdrawEnergy()
    assert StartTimer(timer=Timer.PILOT_RELEASE, after_ms=RULES.pilot_release_ms) in actions
    assert not of(OpenContactor, actions)
    assert walk.kiosk.contactor_closed
    phase = walk.kiosk.phase
    assert isinstance(phase, Charging) and phase.stopping == "cost_cap"
    assert phase.session.meterage is not None
    assert phase.session.meterage.total() <= cap
    walk.sample(3)  # energy still counted until the load ends
    actions = walk.pilot(PilotState.B)
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "cost_cap"
    (capture,) = settlements(walk.sample(0))
    assert isinstance(capture, Capture)
    assert capture.amount <= cap and not capture.bill.limited


def test_a_car_that_stays_in_c_at_the_cap_is_cut_off_before_the_cap_is_passed() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    walk.answer(amount=Money(600, EUR))
    while not of(WithdrawEnergy, walk.sample(100)):
        pass
    # The car ignores the PWM going off and keeps drawing: the contactor opens before the
    # next sample would pass the authorized amount (or at the release timeout, whichever
    # comes first), and the car is billed no more than was authorized.
    for _ in range(RULES.pilot_release_ms // 1_000):
        actions = walk.sample(100)
        if of(OpenContactor, actions):
            break
        phase = walk.kiosk.phase
        assert isinstance(phase, Charging) and phase.session.meterage is not None
        assert phase.session.meterage.total() <= Money(600, EUR)
    else:
        actions = walk.timer(Timer.PILOT_RELEASE)
        assert Report(kind="pilot_release_timeout", detail="cost_cap") in actions
    assert isinstance(actions[0], OpenContactor)
    assert walk.kiosk.phase.session is not None
    assert walk.kiosk.phase.session.end_reason == "cost_cap"
    (capture,) = settlements(walk.sample(0))
    assert isinstance(capture, Capture)
    assert capture.amount <= Money(600, EUR)


def test_a_remote_stop_is_a_normal_stop_pwm_off_then_open_after_c_to_b() -> None:
    walk = Walk()
    walk.charging()
    walk.sample(1_000)
    session = walk.kiosk.session
    assert session is not None
    actions = walk.event(StopRequested, session_id=session.session_id)
    assert actions[0] == WithdrawEnergy()
    assert not of(OpenContactor, actions)
    assert walk.kiosk.contactor_closed
    assert walk.event(StopRequested, session_id=session.session_id) == ()  # already stopping
    actions = walk.pilot(PilotState.B)
    assert isinstance(actions[0], OpenContactor)
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "remote"


# -- the offered current: lowered near the cap, and by a load manager -------------------------

TAPERING = replace(RULES, taper_at_percent=90, taper_current_a=6)


def test_the_offer_drops_to_the_taper_current_as_the_cost_cap_nears() -> None:
    walk = Walk(TAPERING)
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    actions = walk.answer(amount=Money(600, EUR))  # 6.00 EUR buys 20 kWh
    assert of(OfferEnergy, actions) == [OfferEnergy(current_a=16)]
    offers: list[tuple[int, int]] = []  # (cost in cents when offered, amperes)
    for _ in range(300):
        actions = walk.sample(100)  # 0.1 kWh (3 cents) per sample
        phase = walk.kiosk.phase
        assert isinstance(phase, Charging)
        if phase.stopping is not None:
            walk.pilot(PilotState.B)  # the PWM went off at the cap: the car ends the load
            break
        assert phase.session.meterage is not None
        cost = phase.session.meterage.total().minor
        offers += [(cost, offer.current_a) for offer in of(OfferEnergy, actions)]
    assert isinstance(walk.kiosk.phase, Finishing)
    assert walk.kiosk.phase.session.end_reason == "cost_cap"
    (lowered,) = offers  # exactly once, at the first sample at or past 90 % of 6.00 EUR
    assert lowered == (540, 6)


def test_an_approved_increment_lifts_the_lowered_offer() -> None:
    rules = replace(TAPERING, increment=Money(600, EUR), ceiling=Money(5000, EUR))
    walk = Walk(rules)
    walk.boot()
    walk.pilot(PilotState.C)
    walk.tap()
    walk.answer(amount=Money(600, EUR))
    for _ in range(200):  # the top-up is asked for early; its answer is slow to come
        actions = walk.sample(100)
        if OfferEnergy(current_a=6) in actions:
            break
    else:
        raise AssertionError("the offer was never lowered")
    session = walk.kiosk.session
    assert session is not None and session.increment_asked is not None
    walk.event(
        IncrementAnswered,
        session_id=session.session_id,
        outcome=AuthOutcome.APPROVED,
        amount=session.increment_asked,
    )
    actions = walk.sample(100)
    assert of(OfferEnergy, actions) == [OfferEnergy(current_a=16)]


def test_a_load_managers_limit_lowers_the_offer_at_once_and_its_lifting_restores_it() -> None:
    walk = Walk()
    walk.charging()
    actions = walk.event(CurrentLimited, limit_a=10)
    assert actions == (OfferEnergy(current_a=10),)
    assert walk.event(CurrentLimited, limit_a=10) == ()  # no change, no write
    actions = walk.event(CurrentLimited, limit_a=None)
    assert actions == (OfferEnergy(current_a=RULES.max_current_a),)


def test_a_limit_set_between_sessions_rules_the_next_offer() -> None:
    walk = Walk()
    walk.boot()
    assert walk.event(CurrentLimited, limit_a=8) == ()  # nothing offered at rest
    walk.pilot(PilotState.B)
    walk.tap()
    actions = walk.answer()
    assert of(OfferEnergy, actions) == [OfferEnergy(current_a=8)]


def test_a_limit_during_a_normal_stop_offers_nothing() -> None:
    walk = Walk()
    walk.charging()
    walk.tap()  # PWM off, waiting for C->B
    assert walk.event(CurrentLimited, limit_a=10) == ()


def test_with_a_pilot_the_kiosk_only_reads_a_normal_stop_opens_at_once() -> None:
    """The GPIO pilot variant: the board makes the PWM, so there is none to turn off first."""
    walk = Walk(replace(RULES, pwm_control=False))
    walk.charging()
    walk.sample(1_000)
    actions = walk.tap()
    assert isinstance(actions[0], OpenContactor)
    assert not of(StartTimer, actions) or all(
        timer.timer is not Timer.PILOT_RELEASE for timer in of(StartTimer, actions)
    )
