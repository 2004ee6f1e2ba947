"""Parsing and validating the OCPI 2.2.1 Tariff object (mod_tariffs "Object description");
an invalid tariff is rejected with the JSON path of the offending field."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from terminal.tariff import TariffDimension, TariffError, parse_tariff
from terminal.tariff.model import DayOfWeek, TariffType
from tests.tariff.helpers import component, to_json


def _document() -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "ALL",
        "id": "12",
        "currency": "EUR",
        "type": "AD_HOC_PAYMENT",
        "elements": [
            {"price_components": [component("FLAT", "0.50", 1, "19")]},
            {
                "price_components": [
                    component("ENERGY", "0.25", 1, "19"),
                    component("PARKING_TIME", "6.00", 900, "19"),
                ],
                "restrictions": {
                    "start_time": "09:00",
                    "end_time": "18:00",
                    "day_of_week": ["MONDAY", "FRIDAY"],
                    "min_kwh": Decimal("1.5"),
                    "max_power": Decimal("22"),
                },
            },
        ],
        "min_price": {"excl_vat": Decimal("1.00"), "incl_vat": Decimal("1.19")},
        "last_updated": "2024-01-01T00:00:00Z",
    }


def test_a_valid_tariff_parses_with_exact_decimals() -> None:
    tariff = parse_tariff(to_json(_document()))
    assert tariff.type is TariffType.AD_HOC_PAYMENT
    energy = tariff.elements[1].price_components[0]
    assert energy.type is TariffDimension.ENERGY
    assert energy.price == Decimal("0.25")
    assert isinstance(energy.price, Decimal)
    restrictions = tariff.elements[1].restrictions
    assert restrictions is not None
    assert restrictions.day_of_week == {DayOfWeek.MONDAY, DayOfWeek.FRIDAY}
    assert restrictions.min_kwh == Decimal("1.5")
    assert tariff.min_price is not None and tariff.min_price.incl_vat == Decimal("1.19")


def _set(doc: dict[str, Any], path: list[Any], value: Any) -> None:
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("where", "value", "reported"),
    [
        (["currency"], "XXX", "currency"),
        (["currency"], _DELETE, "currency"),
        (["elements"], [], "elements"),
        (
            ["elements", 1, "price_components", 1, "step_size"],
            Decimal("1.5"),
            "elements[1].price_components[1].step_size",
        ),
        (
            ["elements", 1, "price_components", 1, "step_size"],
            -1,
            "elements[1].price_components[1].step_size",
        ),
        (
            ["elements", 1, "price_components", 0, "price"],
            Decimal("-0.01"),
            "elements[1].price_components[0].price",
        ),
        (
            ["elements", 1, "price_components", 0, "price"],
            "0.25",
            "elements[1].price_components[0].price",
        ),
        (
            ["elements", 1, "price_components", 0, "vat"],
            Decimal("119"),
            "elements[1].price_components[0].vat",
        ),
        (
            ["elements", 1, "price_components", 0, "type"],
            "KWH",
            "elements[1].price_components[0].type",
        ),
        (
            ["elements", 1, "price_components", 1, "type"],
            "ENERGY",
            "elements[1].price_components[1].type",
        ),
        (
            ["elements", 1, "price_components", 1, "step-size"],
            60,
            "elements[1].price_components[1].step-size",
        ),
        (
            ["elements", 1, "restrictions", "start_time"],
            "9:00",
            "elements[1].restrictions.start_time",
        ),
        (["elements", 1, "restrictions", "end_time"], "24:00", "elements[1].restrictions.end_time"),
        (
            ["elements", 1, "restrictions", "start_date"],
            "2024-02-30",
            "elements[1].restrictions.start_date",
        ),
        (
            ["elements", 1, "restrictions", "day_of_week"],
            ["MON"],
            "elements[1].restrictions.day_of_week[0]",
        ),
        (
            ["elements", 1, "restrictions", "max_kwh"],
            Decimal("1.0"),
            "elements[1].restrictions.min_kwh",
        ),
        (
            ["elements", 1, "restrictions", "reservation"],
            "YES",
            "elements[1].restrictions.reservation",
        ),
        (["elements", 0, "price_components"], [], "elements[0].price_components"),
        (["min_price", "incl_vat"], Decimal("0.90"), "min_price.incl_vat"),
        (["max_price"], {"excl_vat": Decimal("0.50")}, "min_price.excl_vat"),
        (["last_updated"], "yesterday", "last_updated"),
        (["party_id"], "TOOLONG", "party_id"),
        (["tariff_alt_text"], [{"language": "en"}], "tariff_alt_text[0].text"),
    ],
)
def test_invalid_tariff_names_the_field(where: list[Any], value: Any, reported: str) -> None:
    doc = copy.deepcopy(_document())
    _set(doc, where, value)
    with pytest.raises(TariffError) as caught:
        parse_tariff(to_json(doc))
    assert caught.value.path == reported
    assert str(caught.value).startswith(f"{reported}: ")
    assert isinstance(caught.value, ValueError)


def test_float_free_parsing_rejects_non_numbers_and_bad_json() -> None:
    with pytest.raises(TariffError, match="not valid JSON"):
        parse_tariff("{")
    text = to_json(_document()).replace('"price": 0.25', '"price": NaN')
    with pytest.raises(TariffError, match="not a JSON number"):
        parse_tariff(text)


def test_end_date_time_must_follow_start_date_time() -> None:
    doc = _document()
    doc["start_date_time"] = "2024-06-01T00:00:00Z"
    doc["end_date_time"] = "2024-05-01T00:00:00Z"
    with pytest.raises(TariffError) as caught:
        parse_tariff(to_json(doc))
    assert caught.value.path == "end_date_time"
