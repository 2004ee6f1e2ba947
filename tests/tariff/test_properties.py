"""Properties of the tariff engine over generated OCPI tariffs and sessions.

- the incremental meterage equals the full recomputation, sample for sample;
- a price is never negative, never above max_price, never below min_price, with energy or
  without (the kiosk still voids a session without energy: that is the machine's rule);
- with step_size 1 everywhere (OCPI 2.2.1's own advice, PriceComponent note) the running
  price never falls as a session goes on, and, for tariffs whose restrictions do not look at
  energy, power or current, more energy never costs less. (With larger steps it can fall:
  mod_cdrs "step_size" drops the rounding of charging time once parking starts.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.money import Money
from terminal.tariff import ChargingPeriod, OcpiTariff
from tests.tariff.helpers import BERLIN, to_json

DIMENSIONS = ("ENERGY", "FLAT", "TIME", "PARKING_TIME")
prices = st.decimals(min_value=0, max_value=5, places=2)
times = st.sampled_from(["00:00", "02:30", "06:00", "09:00", "17:00", "22:00"])
days = st.lists(
    st.sampled_from(["MONDAY", "WEDNESDAY", "SATURDAY", "SUNDAY"]), min_size=1, unique=True
)


@st.composite
def restrictions(draw: st.DrawFn, *, electrical: bool, energy: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["start_time"] = draw(times)
    if draw(st.booleans()):
        out["end_time"] = draw(times)
    if draw(st.booleans()):
        out["day_of_week"] = draw(days)
    if draw(st.booleans()):
        out["max_duration" if draw(st.booleans()) else "min_duration"] = draw(
            st.sampled_from([600, 3600, 7200])
        )
    if energy and draw(st.booleans()):
        out["min_kwh" if draw(st.booleans()) else "max_kwh"] = Decimal(
            draw(st.sampled_from(["0.5", "2", "7.25"]))
        )
    if electrical and draw(st.booleans()):
        out["max_power" if draw(st.booleans()) else "min_power"] = Decimal(
            draw(st.sampled_from(["7.4", "22", "50"]))
        )
    if electrical and draw(st.booleans()):
        out["max_current" if draw(st.booleans()) else "min_current"] = Decimal(
            draw(st.sampled_from(["16", "32"]))
        )
    return out


@st.composite
def tariffs(draw: st.DrawFn, *, unit_steps: bool = False, usage_blind: bool = False) -> OcpiTariff:
    vat = draw(st.sampled_from([None, Decimal("0"), Decimal("7"), Decimal("19")]))
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        kinds = draw(st.lists(st.sampled_from(DIMENSIONS), min_size=1, max_size=4, unique=True))
        components = []
        for kind in kinds:
            step = 1
            if not unit_steps and kind != "FLAT":
                step = draw(st.sampled_from([0, 1, 60, 300, 900] if "TIME" in kind else [1, 100]))
            comp: dict[str, Any] = {"type": kind, "price": draw(prices), "step_size": step}
            if vat is not None:
                comp["vat"] = vat
            components.append(comp)
        element: dict[str, Any] = {"price_components": components}
        rules = draw(restrictions(electrical=not usage_blind, energy=not usage_blind))
        if rules:
            element["restrictions"] = rules
        elements.append(element)
    document: dict[str, Any] = {
        "country_code": "DE",
        "party_id": "ALL",
        "id": "P",
        "currency": "EUR",
        "elements": elements,
        "last_updated": "2024-01-01T00:00:00Z",
    }
    factor = 1 + (vat or Decimal(0)) / Decimal(100)
    low = draw(st.none() | st.decimals(min_value=0, max_value=3, places=2))
    high = draw(st.none() | st.decimals(min_value=3, max_value=40, places=2))
    if low is not None:
        document["min_price"] = {"excl_vat": low, "incl_vat": low * factor}
    if high is not None:
        document["max_price"] = {"excl_vat": high, "incl_vat": high * factor}
    return OcpiTariff.from_json(to_json(document), tz=BERLIN)


starts = st.sampled_from(
    [
        datetime(2024, 3, 30, 22, 17, tzinfo=UTC),  # the night of the spring DST change
        datetime(2024, 10, 26, 23, 59, tzinfo=UTC),  # the autumn DST change
        datetime(2024, 5, 4, 15, 0, tzinfo=UTC),  # a Saturday afternoon
        datetime(2024, 5, 6, 5, 45, tzinfo=UTC),  # a Monday morning
    ]
)
samples = st.lists(
    st.tuples(
        st.integers(0, 2 * 3600),  # seconds since the previous sample
        st.integers(0, 15_000),  # Wh delivered since the previous sample
        st.booleans(),  # charging
        st.integers(0, 150_000),  # W
        st.integers(0, 100_000),  # mA
    ),
    min_size=1,
    max_size=25,
)

Sample = tuple[int, int, bool, int, int]


def _run(tariff: OcpiTariff, start: datetime, session: list[Sample]) -> list[Money]:
    """Totals after each sample; asserts incremental == recomputation at every step."""
    meterage = tariff.begin(start)
    periods: list[ChargingPeriod] = []
    at, energy = start, 0
    totals = []
    for gap, wh, charging, power, current in session:
        periods.append(
            ChargingPeriod(
                start=at, energy_wh=wh, power_w=power, current_ma=current, charging=charging
            )
        )
        at, energy = at + timedelta(seconds=gap), energy + wh
        meterage = meterage.advance(
            at=at, energy_wh=energy, power_w=power, current_ma=current, charging=charging
        )
        assert meterage.price() == tariff.price(start=start, periods=periods, end=at)
        totals.append(meterage.total())
    return totals


@settings(max_examples=150, deadline=None)
@given(tariff=tariffs(), start=starts, session=samples)
def test_incremental_equals_recomputation_and_stays_within_bounds(
    tariff: OcpiTariff, start: datetime, session: list[Sample]
) -> None:
    _run(tariff, start, session)
    periods = []
    at = start
    for gap, wh, charging, power, current in session:
        periods.append(
            ChargingPeriod(
                start=at, energy_wh=wh, power_w=power, current_ma=current, charging=charging
            )
        )
        at += timedelta(seconds=gap)
    bill = tariff.price(start=start, periods=periods, end=at).bill
    assert bill.total_excl_vat.minor >= 0
    assert bill.total >= bill.total_excl_vat
    document = tariff.document
    if document.max_price is not None:
        assert bill.total_excl_vat.to_decimal() <= document.max_price.excl_vat
        assert document.max_price.incl_vat is not None
        assert bill.total.to_decimal() <= document.max_price.incl_vat
    if document.min_price is not None:
        assert bill.total_excl_vat.to_decimal() >= document.min_price.excl_vat
        assert document.min_price.incl_vat is not None
        assert bill.total.to_decimal() >= document.min_price.incl_vat.quantize(Decimal("0.01"))


@settings(max_examples=150, deadline=None)
@given(tariff=tariffs(unit_steps=True), start=starts, session=samples)
def test_running_price_never_falls_with_unit_steps(
    tariff: OcpiTariff, start: datetime, session: list[Sample]
) -> None:
    totals = _run(tariff, start, session)
    assert all(a <= b for a, b in pairwise(totals))


@settings(max_examples=100, deadline=None)
@given(tariff=tariffs(unit_steps=True, usage_blind=True), start=starts, session=samples)
def test_more_energy_never_costs_less(
    tariff: OcpiTariff, start: datetime, session: list[Sample]
) -> None:
    more = [(gap, wh * 2 + 1, charging, p, c) for gap, wh, charging, p, c in session]
    assert _run(tariff, start, session)[-1] <= _run(tariff, start, more)[-1]
