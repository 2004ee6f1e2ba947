"""The cost cap with OCPI tariffs, at the machine: time-based components are counted ahead,
idle fees after the car is full stop at the cap too, and energy stops within one meter
sample and the vehicle's time to leave C of it (a hypothesis property over tariffs, holds,
powers and sample intervals). A stop at the cap is a normal stop: the PWM goes off and the
contactor opens when the vehicle has ended the load (C→B), as the car here does at once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import (
    Action,
    Capture,
    ReadMeter,
    RequestIncrement,
    ShowScreen,
    Void,
    WithdrawEnergy,
)
from terminal.core.billing import LIMIT, EnergyTariff, Tariff
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    CardPresented,
    Event,
    IncrementAnswered,
    MeterSampled,
    PoweredUp,
    VehicleStateChanged,
)
from terminal.core.kiosk import Charging, Finishing, Kiosk, Receipt, Rules, Suspended
from terminal.core.machine import step
from terminal.core.screens import frame_for
from terminal.core.session import Card, CardKind
from terminal.money import Money
from terminal.tariff import OcpiTariff

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 20, 17, 0, tzinfo=UTC)  # a Tuesday, 18:00 in Berlin
CARD = Card(kind=CardKind.PAYMENT, token="token-000000000001", brand="Visa", last4="0010")
REGISTER = 10_000


def ocpi(*elements: dict[str, Any], **extra: Any) -> OcpiTariff:
    document = {
        "country_code": "DE",
        "party_id": "EVT",
        "id": "test",
        "currency": "EUR",
        "elements": list(elements),
        "last_updated": "2026-01-01T00:00:00Z",
        **extra,
    }
    return OcpiTariff.from_json(json.dumps(document), tz=BERLIN)


def component(kind: str, price: str, step_size: int = 1) -> dict[str, Any]:
    return {"type": kind, "price": float(price), "vat": 19.0, "step_size": step_size}


TARIFFS: dict[str, Tariff] = {
    "energy": EnergyTariff(
        name="energy", currency="EUR", per_kwh=Decimal("0.35"), vat_percent=Decimal(19)
    ),
    "energy-and-time": ocpi(
        {"price_components": [component("ENERGY", "0.30"), component("TIME", "3.00", 60)]}
    ),
    "idle-fee": ocpi(
        {"price_components": [component("ENERGY", "0.30"), component("PARKING_TIME", "60.00")]}
    ),
    "time-of-day": ocpi(
        {"price_components": [component("FLAT", "0.50")]},
        {
            "price_components": [component("ENERGY", "0.60", 100)],
            "restrictions": {"start_time": "18:30", "end_time": "19:00"},
        },
        {
            "price_components": [
                component("ENERGY", "0.40"),
                component("PARKING_TIME", "12.00", 300),
            ]
        },
    ),
    "kwh-steps": ocpi(
        {"price_components": [component("ENERGY", "0.45", 1000), component("TIME", "1.20")]}
    ),
}


@dataclass
class Drive:
    """Feeds the machine the events a kiosk would, and keeps what it answered."""

    tariff: Tariff
    hold: int
    increment: int | None = None
    every_ms: int = 1000  # the configured sample interval
    kiosk: Kiosk = field(init=False)
    ms: int = 0
    register: int = REGISTER
    actions: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        money = Money(self.increment, "EUR") if self.increment else None
        rules = Rules(
            tariff=self.tariff,
            hold=Money(self.hold, "EUR"),
            min_authorized=Money(1, "EUR"),
            station="Test Street 1",
            receipt_url="https://example.test/r",
            increment=money,
            ceiling=Money(self.hold * 3, "EUR") if money else None,
            sample_interval_ms=self.every_ms,
        )
        self.kiosk = Kiosk(rules=rules)
        self.send(PoweredUp, 0, register_wh=self.register)

    def send(self, kind: type[Event], after_ms: int, **fields: Any) -> tuple[Action, ...]:
        self.ms += after_ms
        at = T0 + timedelta(milliseconds=self.ms)
        self.kiosk, actions = step(self.kiosk, kind(at_ms=self.ms, at=at, **fields))
        self.actions += actions
        return actions

    def start(self) -> None:
        self.send(VehicleStateChanged, 1000, state=PilotState.B)
        self.send(CardPresented, 1000, card=CARD, session_id="session-000001")
        self.send(
            AuthorizationAnswered,
            500,
            session_id="session-000001",
            outcome=AuthOutcome.APPROVED,
            amount=Money(self.hold, "EUR"),
        )
        self.send(VehicleStateChanged, 500, state=PilotState.C)
        assert isinstance(self.kiosk.phase, Charging)

    def sample(self, add_wh: int, every_ms: int, power_w: int) -> tuple[Action, ...]:
        self.register += add_wh
        actions = self.send(MeterSampled, every_ms, energy_wh=self.register, power_w=power_w)
        if any(isinstance(a, WithdrawEnergy) for a in actions) and isinstance(
            self.kiosk.phase, Charging
        ):
            # A normal stop (the cap): the PWM went off, the car ends the load (C→B).
            actions += self.send(VehicleStateChanged, 0, state=PilotState.B)
        if any(isinstance(a, ReadMeter) for a in actions):  # stopping: the final reading
            actions += self.send(MeterSampled, 0, energy_wh=self.register, power_w=0)
        return actions

    @property
    def settled(self) -> Capture | Void | None:
        return next((a for a in self.actions if isinstance(a, Capture | Void)), None)


def test_idle_fee_after_the_car_is_full_stops_at_the_cap() -> None:
    # 60.00 per hour parked is 1.19 EUR a minute incl. VAT: a 5.00 EUR hold lasts minutes.
    drive = Drive(tariff=TARIFFS["idle-fee"], hold=500)
    drive.start()
    for _ in range(60):
        drive.sample(add_wh=10, every_ms=1000, power_w=36_000)
    drive.send(VehicleStateChanged, 0, state=PilotState.B)  # full: the contactor opens
    assert isinstance(drive.kiosk.phase, Suspended)
    for _ in range(600):
        drive.sample(add_wh=0, every_ms=1000, power_w=0)
        if not isinstance(drive.kiosk.phase, Suspended):
            break
    assert isinstance(drive.kiosk.phase, Receipt)
    assert drive.kiosk.phase.session.end_reason == "cost_cap"
    capture = drive.settled
    assert isinstance(capture, Capture)
    # Stopped within one sample (one second of idle fee, 0.02 EUR) of the cap, never over it.
    assert 500 - 2 <= capture.amount.minor <= 500
    assert capture.amount == capture.bill.total
    assert {line.dimension for line in capture.bill.lines} >= {"PARKING_TIME"}


def test_time_component_is_counted_ahead_while_charging() -> None:
    # Little energy, a charging-time price: the time alone reaches the cap.
    drive = Drive(tariff=TARIFFS["energy-and-time"], hold=200)
    drive.start()
    for _ in range(3600):
        drive.sample(add_wh=1, every_ms=1000, power_w=3_600)
        if not isinstance(drive.kiosk.phase, Charging):
            break
    assert isinstance(drive.kiosk.phase, Receipt)
    assert drive.kiosk.phase.session.end_reason == "cost_cap"
    capture = drive.settled
    assert isinstance(capture, Capture)
    assert capture.amount.minor <= 200
    assert capture.amount == capture.bill.total


def test_approved_increment_raises_the_cap_and_a_declined_one_does_not() -> None:
    drive = Drive(tariff=TARIFFS["energy"], hold=300, increment=200)
    drive.start()
    asked: list[RequestIncrement] = []
    for _ in range(3600):
        for action in drive.sample(add_wh=20, every_ms=1000, power_w=72_000):
            if isinstance(action, RequestIncrement):
                asked.append(action)
                outcome = AuthOutcome.APPROVED if len(asked) == 1 else AuthOutcome.DECLINED
                # A gateway answering more than asked is not believed past what was asked.
                drive.send(
                    IncrementAnswered,
                    200,
                    session_id="session-000001",
                    outcome=outcome,
                    amount=Money(900, "EUR") if outcome is AuthOutcome.APPROVED else None,
                )
        if not isinstance(drive.kiosk.phase, Charging):
            break
    assert [(a.amount.minor, a.ceiling.minor, a.number) for a in asked] == [
        (200, 900, 1),
        (200, 900, 2),
    ]
    assert isinstance(drive.kiosk.phase, Receipt)
    session = drive.kiosk.phase.session
    assert session.authorized == Money(500, "EUR")
    capture = drive.settled
    assert isinstance(capture, Capture)
    # Stopped one sample and the 6 s pilot release (7 s at 0.83 cents a second) before the cap.
    assert 500 - 7 <= capture.amount.minor <= 500


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@example(tariff="kwh-steps", hold=100, power_w=60060, every_s=60, start_min=0, park_after=1)
@given(
    tariff=st.sampled_from(sorted(TARIFFS)),
    hold=st.integers(100, 3000),
    power_w=st.integers(7_000, 150_000),
    every_s=st.integers(1, 60),
    start_min=st.integers(0, 60 * 24 * 7),
    park_after=st.integers(0, 2000),
)
def test_stops_within_a_sample_and_a_pilot_release_of_the_cap(  # noqa: PLR0917 - one draw each
    tariff: str, hold: int, power_w: int, every_s: int, start_min: int, park_after: int
) -> None:
    """Constant power and sample interval, so the next sample is exactly the machine's
    projection: the cost never passes the cap, and one more sample (and, while charging, the
    vehicle's time to leave C after the PWM goes off) would have. The one
    exception is the very first sample: nothing was measured before it to project from, so
    if one sample's energy alone costs more than the cap, it stops there (within one sample)
    and the capture is clipped to the hold."""
    every_ms = every_s * 1000
    drive = Drive(tariff=TARIFFS[tariff], hold=hold, every_ms=every_ms)
    drive.ms = start_min * 60_000
    drive.start()
    step_wh = power_w * every_ms // 3_600_000
    samples = 0
    first_sample_over = False
    while isinstance(drive.kiosk.phase, Charging | Suspended) and samples < 5_000:
        parked = samples >= park_after
        if samples == park_after:
            # The car is full: the first sample parked is counted ahead at once.
            drive.send(VehicleStateChanged, 0, state=PilotState.B)
            if not isinstance(drive.kiosk.phase, Suspended):
                assert isinstance(drive.kiosk.phase, Finishing)
                assert drive.kiosk.phase.session.end_reason == "cost_cap"
                drive.sample(0, 0, 0)  # the final reading
                break
        before = drive.kiosk.phase.session
        drive.sample(0 if parked else step_wh, every_ms, 0 if parked else power_w)
        samples += 1
        phase = drive.kiosk.phase
        if isinstance(phase, Receipt | Finishing):
            assert phase.session.end_reason == "cost_cap"
            meterage = before.meterage
            assert meterage is not None and before.authorized is not None
            assert phase.session.meterage is not None
            if samples == 1 and phase.session.meterage.total() > before.authorized:
                first_sample_over = True  # stopped at the first sample: nothing to project from
                if isinstance(phase, Finishing):
                    drive.sample(0, 0, 0)  # the final reading
                break
            # The sample that stopped it was priced within the cap ...
            assert phase.session.meterage.total() <= before.authorized
            # ... and one more like it, and the vehicle's time to leave C after the PWM goes
            # off (while it charges), would have passed the cap.
            at = phase.session.last_sample_at
            assert at is not None
            release_ms = 0 if parked else drive.kiosk.rules.pilot_release_ms
            ahead = phase.session.meterage.advance(
                at=at + timedelta(milliseconds=every_ms + release_ms),
                energy_wh=phase.session.energy_wh
                + (0 if parked else step_wh + power_w * release_ms // 3_600_000),
                power_w=0 if parked else power_w,
                current_ma=0,
                charging=not parked,
            )
            assert ahead.total() > before.authorized
    settled = drive.settled
    if isinstance(settled, Capture):
        assert settled.amount.minor <= hold
        if first_sample_over:
            assert settled.amount.minor == hold  # clipped to the hold, never above it
        else:
            assert not settled.bill.limited  # never clipped: it never passed the cap
        assert settled.amount == settled.bill.total  # the receipt totals the capture


def _receipt(drive: Drive) -> screens.Receipt:
    shown = [
        a.screen
        for a in drive.actions
        if isinstance(a, ShowScreen) and isinstance(a.screen, screens.Receipt)
    ]
    assert len(shown) == 1
    return shown[0]


def _amount(text: str) -> int:
    value, currency = text.split(" ")
    assert currency == "EUR"
    return int(Decimal(value) * 100)


@settings(max_examples=40, deadline=None)
@example(tariff="energy", hold=300, before_w=11_000, jump_w=150_000, every_s=10)
@given(
    tariff=st.sampled_from(sorted(TARIFFS)),
    hold=st.integers(100, 800),
    before_w=st.integers(7_000, 22_000),
    jump_w=st.integers(150_000, 400_000),
    every_s=st.integers(10, 60),
)
def test_receipt_totals_the_capture_when_power_jumps_before_the_cap(
    tariff: str, hold: int, before_w: int, jump_w: int, every_s: int
) -> None:
    """Power jumps between two samples near the cap: the cost passes the hold before the
    contactor opens. The capture is clipped to the hold, and the bill, the screen's receipt
    and its lines all total exactly what is captured, with a LIMIT line carrying its VAT."""
    every_ms = every_s * 1000
    drive = Drive(tariff=TARIFFS[tariff], hold=hold, every_ms=every_ms)
    drive.start()
    jumped = False
    previous = 0
    for _ in range(5_000):
        if not isinstance(drive.kiosk.phase, Charging):
            break
        session = drive.kiosk.phase.session
        assert session.meterage is not None and session.authorized is not None
        total = session.meterage.total().minor
        # Jump when two more samples like the last would reach the cap.
        jumped = jumped or total + 2 * (total - previous) >= session.authorized.minor
        previous = total
        power = jump_w if jumped else before_w
        drive.sample(power * every_ms // 3_600_000, every_ms, power)
    capture = drive.settled
    assert isinstance(capture, Capture)
    assert capture.amount.minor <= hold
    bill = capture.bill
    assert bill.total == capture.amount
    assert sum((line.incl_vat for line in bill.lines), Money.zero("EUR")) == capture.amount
    assert sum(v.base.minor + v.vat.minor for v in bill.vat) == capture.amount.minor
    assert bill.total_excl_vat.minor == sum(line.excl_vat.minor for line in bill.lines)
    receipt = _receipt(drive)
    assert receipt.total == capture.amount
    fields = frame_for(receipt).fields
    assert fields[-1] == ("Total", str(capture.amount))
    # The lines shown incl. VAT add up to the total shown.
    items = fields[2 : 2 + len(bill.lines)]
    assert sum(_amount(value) for _, value in items) == capture.amount.minor
    priced = drive.kiosk.phase
    assert isinstance(priced, Receipt) and priced.session.meterage is not None
    if priced.session.meterage.total() > capture.amount:
        assert bill.limited
        limit = [line for line in bill.lines if line.dimension == LIMIT]
        assert all(line.vat_percent == Decimal(19) for line in limit)
        assert ("Limited to the authorized amount", str(limit[0].incl_vat)) in fields
    else:
        assert not bill.limited


def test_power_jump_past_the_cap_is_limited_to_the_hold_on_the_receipt() -> None:
    # 0.35 excl. 19 % VAT is 0.4165 per kWh; 3.00 EUR buys 7.2 kWh. A jump to 150 kW with
    # 10 s samples puts 0.42 kWh (0.17 EUR) in one sample, past the cap.
    drive = Drive(tariff=TARIFFS["energy"], hold=300, every_ms=10_000)
    drive.start()
    while isinstance(drive.kiosk.phase, Charging):
        meterage = drive.kiosk.phase.session.meterage
        assert meterage is not None
        power = 150_000 if meterage.total().minor >= 297 else 11_000
        drive.sample(power * 10 // 3600, 10_000, power)
    capture = drive.settled
    assert isinstance(capture, Capture)
    assert capture.amount == Money(300, "EUR")
    assert capture.bill.total == Money(300, "EUR")
    assert capture.bill.limited
    [limit] = [line for line in capture.bill.lines if line.dimension == LIMIT]
    [energy] = [line for line in capture.bill.lines if line.dimension == "ENERGY"]
    assert energy.incl_vat.minor > 300
    assert limit.incl_vat.minor == 300 - energy.incl_vat.minor
    [vat] = capture.bill.vat
    assert (vat.base.minor, vat.vat.minor) == (252, 48)  # 3.00 x 19 / 119 = 0.479
