"""An independent price for a session, written from the OCPI 2.2.1 text and the kiosk's
documented billing rule, sharing no code with `terminal/tariff` or `terminal/core/billing`:
what a crash test compares the gateway's captures with.

Only what the crash tests' tariffs use: elements without restrictions, one price component
per dimension (FLAT, ENERGY, TIME, PARKING_TIME), each with its VAT; no min/max price.

- OCPI 2.2.1 mod_tariffs: the active component of a dimension is that of the first element
  that has one (no restrictions: always the first). FLAT is billed once per session; ENERGY
  per Wh delivered; TIME per second while the vehicle charges; PARKING_TIME per second while
  it is connected and not charging.
- OCPI 2.2.1 mod_cdrs "step_size": the energy total is rounded up to the ENERGY step; of the
  time dimensions only the one of the last period with a price is rounded up (its session
  total), to its step.
- The kiosk's rule (docs/tariffs.md, "Rounding"): a unit price incl. VAT is rounded half-up
  to the minor unit per session, 2 digits beyond it per kWh and 4 beyond it per minute; a line
  costs its quantity in that unit times that unit price, rounded half-up to the minor unit;
  the total is the sum of the lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")  # the tests' currency (EUR) has two decimals


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of the session: `ms` long, the vehicle charging or parked."""

    charging: bool
    ms: int


def _component(tariff: dict[str, Any], dimension: str) -> dict[str, Any] | None:
    for element in tariff["elements"]:
        assert not element.get("restrictions"), "the reference prices unrestricted elements"
        for component in element["price_components"]:
            if component["type"] == dimension:
                return dict(component)
    return None


def _gross(component: dict[str, Any], per: Decimal, digits: int) -> Decimal:
    """The unit price incl. VAT, rounded half-up to `digits` decimals."""
    price = Decimal(str(component["price"])) / per
    vat = Decimal(str(component.get("vat", 0)))
    return (price * (1 + vat / 100)).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)


def _line(quantity: Decimal, unit_price: Decimal) -> int:
    """A line in minor units: quantity times the unit price, rounded half-up once."""
    return int((quantity * unit_price).quantize(CENT, ROUND_HALF_UP) * 100)


def _up(value: int, step: int) -> int:
    return -(-value // step) * step


def reference_total(tariff: dict[str, Any], *, energy_wh: int, periods: Sequence[Period]) -> int:
    """What a session costs, incl. VAT, in minor units."""
    total = 0
    flat = _component(tariff, "FLAT")
    if flat is not None:
        total += _line(Decimal(1), _gross(flat, Decimal(1), 2))
    energy = _component(tariff, "ENERGY")
    if energy is not None and energy_wh > 0:
        wh = _up(energy_wh, max(int(energy["step_size"]), 1))
        total += _line(Decimal(wh) / 1000, _gross(energy, Decimal(1), 4))
    spent = {"TIME": 0, "PARKING_TIME": 0}  # seconds, as ms
    last = None
    for period in periods:
        dimension = "TIME" if period.charging else "PARKING_TIME"
        if period.ms > 0 and _component(tariff, dimension) is not None:
            spent[dimension] += period.ms
            last = dimension
    for dimension, spent_ms in spent.items():
        component = _component(tariff, dimension)
        if component is None or spent_ms == 0:
            continue
        step_ms = max(int(component["step_size"]), 1) * 1000
        minutes = Decimal(_up(spent_ms, step_ms) if dimension == last else spent_ms) / 60_000
        total += _line(minutes, _gross(component, Decimal(60), 6))  # per hour → per minute
    return total
