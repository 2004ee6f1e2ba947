"""The price before start (AFIR Art. 5; OCPI 2.2.1 mod_tariffs: the element active for a
session starting at that moment), in English and German."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from terminal.core.words import render
from terminal.i18n import Translator
from terminal.tariff import OcpiTariff
from tests.tariff.helpers import BERLIN, component, local, make_tariff

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "tariffs"


def _load(name: str) -> OcpiTariff:
    return OcpiTariff.from_json((DEPLOY / name).read_bytes(), tz=BERLIN)


def test_daytime_lines_show_all_dimensions_incl_vat_in_english() -> None:
    tariff = _load("time-of-day-with-idle-fee.json")
    assert tariff.price_lines(local(2024, 5, 6, 10)) == (
        "0.5355 EUR per kWh",
        "0.60 EUR per session",
        "Idle fee 0.119 EUR per minute",
        "Maximum price 71.40 EUR",
        "incl. 19% VAT",
        "Prices vary with time and use",
    )


def test_night_lines_in_german_use_the_night_element() -> None:
    tariff = _load("time-of-day-with-idle-fee.json")
    words = Translator("de", BERLIN)  # the German catalog, terminal/locale/de
    phrases = tariff.price_phrases(local(2024, 5, 6, 23))
    assert tuple(render(words, phrase) for phrase in phrases) == (
        "0,357 EUR pro kWh",
        "0,60 EUR pro Ladevorgang",
        "Höchstpreis 71,40 EUR",
        "inkl. 19 % MwSt.",
        "Preise abhängig von Zeit und Nutzung",
    )


def test_power_tiers_show_the_dearest_unless_the_power_is_known() -> None:
    tariff = _load("dc-power-tiers.json")
    at = local(2024, 5, 6, 10)
    shown = tariff.display(at)
    assert shown.energy is not None and shown.energy.up_to
    assert shown.energy.price == Decimal("0.55")
    assert tariff.price_lines(at)[0] == "up to 0.6545 EUR per kWh"
    slow = tariff.display(at, power_w=22_000)
    assert slow.energy is not None and not slow.energy.up_to
    assert slow.energy.price == Decimal("0.42")


def test_per_minute_time_price_and_free_tariff() -> None:
    timed = make_tariff([{"price_components": [component("TIME", "3.00", 60, "10")]}])
    assert timed.price_lines(local(2024, 5, 6, 10)) == (
        "0.055 EUR per minute charging",
        "incl. 10% VAT",
    )
    free = make_tariff([{"price_components": [component("FLAT", "0.00", 0)]}])
    assert free.price_lines(local(2024, 5, 6, 10))[0] == "Free of charge"


def test_a_language_without_a_catalog_is_refused() -> None:
    with pytest.raises(ValueError, match="no catalog for 'it'"):
        Translator("it", BERLIN)


def test_min_price_applies_to_a_session_without_energy() -> None:
    # mod_tariffs min_price: "a Charging Session with this tariff will at least cost this
    # amount" -- also one that delivered nothing (the kiosk voids those on its own rule).
    tariff = make_tariff(
        [{"price_components": [component("ENERGY", "0.30", 1, "19")]}],
        min_price={"excl_vat": Decimal("1.00"), "incl_vat": Decimal("1.19")},
    )
    start = local(2024, 5, 6, 10)
    bill = (
        tariff.begin(start)
        .advance(at=local(2024, 5, 6, 11), energy_wh=0, power_w=0, current_ma=0, charging=False)
        .bill()
    )
    assert (bill.total.minor, bill.total_excl_vat.minor) == (119, 100)
    assert [line.dimension for line in bill.lines] == ["MIN_PRICE"]


def test_min_and_max_price_given_excl_vat_are_shown_with_the_vat_charged() -> None:
    tariff = make_tariff(
        [{"price_components": [component("ENERGY", "0.30", 1, "19")]}],
        min_price={"excl_vat": Decimal("2.00")},
        max_price={"excl_vat": Decimal("20.00")},
    )
    start = local(2024, 5, 6, 10)
    lines = tariff.price_lines(start)
    assert "Minimum price 2.38 EUR" in lines  # 2.00 + 19 %, not "2.00" as if incl. VAT
    assert "Maximum price 23.80 EUR" in lines
    # ... and that is what is charged: nothing delivered costs the minimum shown,
    free = tariff.begin(start).bill()
    assert free.total.minor == 238
    # and a long session costs the maximum shown.
    long = tariff.begin(start).advance(
        at=local(2024, 5, 6, 20), energy_wh=200_000, power_w=0, current_ma=0, charging=True
    )
    assert long.total().minor == 2380
