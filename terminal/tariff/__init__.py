"""OCPI 2.2.1 tariffs: parse a Tariff object, price sessions with it, show it before start.

The integrator's entry point is `OcpiTariff.from_json(text, tz=ZoneInfo("Europe/Berlin"))`,
which implements `terminal.core.billing.Tariff`. See docs/tariffs.md.
"""

from terminal.tariff.display import PriceDisplay, UnitPrice
from terminal.tariff.engine import (
    ChargingPeriod,
    OcpiMeterage,
    OcpiTariff,
    PricedLine,
    SessionPrice,
    price_periods,
)
from terminal.tariff.model import Tariff, TariffDimension, TariffError, parse_tariff

__all__ = [
    "ChargingPeriod",
    "OcpiMeterage",
    "OcpiTariff",
    "PriceDisplay",
    "PricedLine",
    "SessionPrice",
    "Tariff",
    "TariffDimension",
    "TariffError",
    "UnitPrice",
    "parse_tariff",
    "price_periods",
]
