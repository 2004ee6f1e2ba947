"""The pricing keys of the config: [tariff] in one of its two forms, and the [payment] keys of
incremental authorization. Errors name the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from terminal.config import parse
from terminal.core.billing import EnergyTariff
from terminal.core.words import render
from terminal.errors import ConfigError
from terminal.i18n import Translator
from terminal.money import Money
from terminal.station import build_rules, build_tariff
from terminal.tariff import OcpiTariff

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "terminal.toml"
TARIFF = "tariffs/time-of-day-with-idle-fee.json"


def example(**sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(sections)
    return data


def error_key(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(data, base=EXAMPLE.parent)
    return str(caught.value)


def test_the_simple_form_builds_the_per_kwh_tariff() -> None:
    config = parse(example(), base=EXAMPLE.parent)
    tariff = build_tariff(config)
    assert isinstance(tariff, EnergyTariff)
    assert tariff.per_kwh == Decimal("0.3277")


def test_an_ocpi_file_alone_is_enough_and_prices_in_the_station_zone_and_language() -> None:
    data = example(
        station={"id": "K-1", "name": "Here", "timezone": "Europe/Berlin", "language": "de"},
        tariff={"ocpi_file": TARIFF},
    )
    config = parse(data, base=EXAMPLE.parent)
    assert config.tariff.name == "time-of-day-idle-fee"  # the tariff's id
    tariff = build_tariff(config)
    assert isinstance(tariff, OcpiTariff)
    assert tariff.tz == ZoneInfo("Europe/Berlin")
    assert tariff.name == "time-of-day-idle-fee"
    # The price lines in the station's language: the screen renders the phrases in German.
    words = Translator(config.station.language, tariff.tz)
    phrases = build_rules(config, tariff).tariff.price_phrases(
        datetime(2026, 1, 20, 11, tzinfo=UTC)
    )
    assert render(words, phrases[0]) == "0,5355 EUR pro kWh"


def test_a_name_beside_the_ocpi_file_labels_the_receipts() -> None:
    config = parse(
        example(tariff={"ocpi_file": TARIFF, "name": "Night and day"}), base=EXAMPLE.parent
    )
    assert build_tariff(config).name == "Night and day"


@pytest.mark.parametrize("key", ["per_kwh", "session_fee", "vat_percent"])
def test_simple_keys_beside_an_ocpi_file_are_refused_by_name(key: str) -> None:
    message = error_key(example(tariff={"ocpi_file": TARIFF, key: "0.30"}))
    assert message.startswith(f"tariff.{key}")


def test_neither_form_names_the_missing_key() -> None:
    assert error_key(example(tariff={"name": "x"})).startswith("tariff.per_kwh")


def test_a_bad_ocpi_file_is_a_config_error_naming_the_key_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        (ROOT / "deploy" / TARIFF).read_text().replace('"step_size": 60', '"step_size": -1')
    )
    message = error_key(example(tariff={"ocpi_file": str(bad)}))
    assert message.startswith("tariff.ocpi_file")
    assert "step_size" in message
    assert error_key(example(tariff={"ocpi_file": "missing.json"})).startswith("tariff.ocpi_file")


def test_an_ocpi_tariff_in_another_currency_is_refused() -> None:
    data = example(tariff={"ocpi_file": TARIFF})
    data["payment"] = {**data["payment"], "currency": "CHF"}
    assert "payment.currency" in error_key(data)


def test_increment_keys_reach_the_rules() -> None:
    data = example()
    data["payment"] = {**data["payment"], "increment": 2000, "ceiling": 15000}
    config = parse(data, base=EXAMPLE.parent)
    rules = build_rules(config, build_tariff(config))
    assert rules.increment == Money(2000, "EUR")
    assert rules.ceiling == Money(15000, "EUR")
    off = parse(example(), base=EXAMPLE.parent)
    assert build_rules(off, build_tariff(off)).increment is None


@pytest.mark.parametrize(
    ("payment", "key"),
    [
        ({"increment": -1}, "payment.increment"),
        ({"increment": 2000, "ceiling": 5000}, "payment.ceiling"),
        ({"ceiling": 100}, "payment.ceiling"),
        ({"increment": "2000"}, "payment.increment"),
    ],
)
def test_bad_increment_keys_are_named(payment: dict[str, Any], key: str) -> None:
    data = example()
    data["payment"] = {**data["payment"], **payment}
    assert error_key(data).startswith(key)
