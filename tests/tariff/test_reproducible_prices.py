"""The prices shown reproduce the bill (terminal.core.billing, the rounding rule): on generated
tariffs and sessions, every line on the receipt is its quantity times the unit price shown on
the idle screen before the session started, rounded once to the cent, and the lines add up to
the total; the VAT per rate and the amounts excl. VAT add up too."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from terminal.core.billing import EnergyTariff
from terminal.core.screens import bill_fields
from terminal.money import Money
from tests.tariff.helpers import Phase, component, drive, local, make_tariff

VATS = ["0", "7", "10", "19", "20", "21", "25.5"]
CENT = Decimal("0.01")


def shown(lines: tuple[str, ...], pattern: str) -> Decimal | None:
    """The amount in the idle screen line matching `pattern` ({} stands for the amount)."""
    regex = re.compile(re.escape(pattern).replace(r"\{\}", r"([0-9.]+) EUR"))
    found = [m.group(1) for line in lines if (m := regex.fullmatch(line))]
    assert len(found) <= 1
    return Decimal(found[0]) if found else None


def seconds(hms: str) -> int:
    h, m, s = (int(part) for part in hms.split(":"))
    return h * 3600 + m * 60 + s


def test_the_issue_example_shows_the_price_it_bills() -> None:
    # 0.3277 excl. 19 % VAT is 0.389963: shown as 0.39 EUR per kWh and billed at 0.39, so
    # 1.214 kWh costs 0.47 (0.39 x 1.214 = 0.47346), not 0.48.
    tariff = EnergyTariff(
        name="t", currency="EUR", per_kwh=Decimal("0.3277"), vat_percent=Decimal(19)
    )
    assert tariff.price_lines(local(2026, 1, 1, 12)) == ("0.39 EUR per kWh", "incl. 19% VAT")
    meterage = tariff.begin(local(2026, 1, 1, 12)).advance(
        at=local(2026, 1, 1, 13), energy_wh=1214, power_w=0, current_ma=0, charging=True
    )
    bill = meterage.bill()
    assert bill.total == Money(47, "EUR")
    assert bill_fields(bill)[0] == ("Energy 1.214 kWh at 0.39 EUR/kWh", "0.47 EUR")
    [vat] = bill.vat
    assert (vat.base, vat.vat) == (Money(39, "EUR"), Money(8, "EUR"))  # 0.47 x 19/119


@settings(max_examples=150, deadline=None)
@example(energy="0.3277", time="0", parking="0", flat="0", vat="19", charge_s=3600,
         energy_wh=1214, park_s=0)  # fmt: skip
@example(energy="0", time="2.00", parking="0", flat="0", vat="10", charge_s=9000,
         energy_wh=0, park_s=0)  # fmt: skip
@given(
    energy=st.decimals(min_value=0, max_value=1, places=4),
    time=st.decimals(min_value=0, max_value=12, places=2),
    parking=st.decimals(min_value=0, max_value=30, places=2),
    flat=st.decimals(min_value=0, max_value=3, places=2),
    vat=st.sampled_from(VATS),
    charge_s=st.integers(1, 6 * 3600),
    energy_wh=st.integers(0, 90_000),
    park_s=st.integers(0, 3 * 3600),
)
def test_unit_prices_shown_before_start_reproduce_every_receipt_line(  # noqa: PLR0917 - one draw each
    energy: Decimal,
    time: Decimal,
    parking: Decimal,
    flat: Decimal,
    vat: str,
    charge_s: int,
    energy_wh: int,
    park_s: int,
) -> None:
    components = [
        component(kind, str(price), 1, vat)
        for kind, price in (
            ("ENERGY", energy),
            ("TIME", time),
            ("PARKING_TIME", parking),
            ("FLAT", flat),
        )
        if price
    ] or [component("FLAT", "0", 1, vat)]
    tariff = make_tariff([{"price_components": components}])
    start = local(2026, 3, 2, 9)
    screen = tariff.price_lines(start)
    phases = [Phase(charge_s, energy_wh)]
    if park_s:
        phases.append(Phase(park_s, 0, charging=False))
    bill = drive(tariff, start, phases).bill
    per_kwh = shown(screen, "{} per kWh")
    per_minute = shown(screen, "{} per minute charging")
    per_session = shown(screen, "{} per session")
    idle = shown(screen, "Idle fee {} per minute")
    fields = bill_fields(bill)
    total = Decimal(0)
    for (label, value), line in zip(fields, bill.lines, strict=False):
        amount = Decimal(value.removesuffix(" EUR"))
        total += amount
        match line.dimension:
            case "ENERGY":
                m = re.fullmatch(r"Energy ([0-9.]+) kWh at ([0-9.]+) EUR/kWh", label)
                assert m is not None and per_kwh is not None
                assert Decimal(m.group(2)) == per_kwh  # the receipt's price is the one shown
                expected = Decimal(m.group(1)) * per_kwh
            case "TIME" | "PARKING_TIME":
                m = re.fullmatch(r".* ([0-9:]+) at ([0-9.]+) EUR/min", label)
                price = per_minute if line.dimension == "TIME" else idle
                assert m is not None and price is not None
                assert Decimal(m.group(2)) == price
                expected = Decimal(seconds(m.group(1))) / 60 * price
            case "FLAT":
                assert per_session is not None
                expected = per_session
            case other:
                raise AssertionError(f"unexpected line {other}")
        assert amount == expected.quantize(CENT, ROUND_HALF_UP), (label, value)
    assert total == bill.total.to_decimal()
    assert sum(v.base.minor + v.vat.minor for v in bill.vat) == bill.total.minor
    assert sum(line.excl_vat.minor for line in bill.lines) == bill.total_excl_vat.minor
    for v in bill.vat:
        exact = (v.base + v.vat).to_decimal() * v.percent / (100 + v.percent)
        assert v.vat.to_decimal() == exact.quantize(CENT, ROUND_HALF_UP)
