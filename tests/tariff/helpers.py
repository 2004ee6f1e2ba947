"""Building tariffs and driving sessions for the tariff tests.

`drive` feeds a session sample by sample into the incremental meterage and, from the same
samples, builds charging periods for the full recomputation; it checks that both agree and
returns the price."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from terminal.money import Money
from terminal.tariff import ChargingPeriod, OcpiTariff, SessionPrice

BERLIN = ZoneInfo("Europe/Berlin")


def make_tariff(
    elements: list[dict[str, Any]], *, tz: tzinfo = BERLIN, **fields: Any
) -> OcpiTariff:
    """An OcpiTariff from element dicts; the required header fields are filled in."""
    document = {
        "country_code": "DE",
        "party_id": "ALL",
        "id": "T1",
        "currency": "EUR",
        "elements": elements,
        "last_updated": "2024-01-01T00:00:00Z",
        **fields,
    }
    return OcpiTariff.from_json(to_json(document), tz=tz)


def component(kind: str, price: str, step: int = 1, vat: str | None = None) -> dict[str, Any]:
    """A PriceComponent dict; prices are Decimal, written to JSON exactly as given."""
    out: dict[str, Any] = {"type": kind, "price": Decimal(price), "step_size": step}
    if vat is not None:
        out["vat"] = Decimal(vat)
    return out


def to_json(document: dict[str, Any]) -> str:
    """JSON with every Decimal written as the exact number it is (no float on the way)."""

    def number(value: object) -> str:
        if isinstance(value, Decimal):
            return f"@@{value}@@"
        raise TypeError(type(value))

    return re.sub(r'"@@([^@"]+)@@"', r"\1", json.dumps(document, default=number))


@dataclass(frozen=True)
class Phase:
    """A stretch of a session: `seconds` long, `energy_wh` delivered evenly over it."""

    seconds: int
    energy_wh: int = 0
    charging: bool = True
    power_w: int = 11_000
    current_ma: int = 16_000


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Berlin wall-clock time (fold 0)."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def drive(
    tariff: OcpiTariff, start: datetime, phases: list[Phase], *, every: int = 60
) -> SessionPrice:
    """Price a session both ways, check they agree, return the price."""
    meterage = tariff.begin(start)
    periods: list[ChargingPeriod] = []
    t = start
    energy = 0
    for phase in phases:
        done = 0
        while done < phase.seconds:
            step = min(every, phase.seconds - done)
            done += step
            delivered = phase.energy_wh * done // phase.seconds
            grown = energy + delivered
            periods.append(
                ChargingPeriod(
                    start=t,
                    energy_wh=grown - (energy + phase.energy_wh * (done - step) // phase.seconds),
                    power_w=phase.power_w,
                    current_ma=phase.current_ma,
                    charging=phase.charging,
                )
            )
            t = t + timedelta(seconds=step)
            meterage = meterage.advance(
                at=t,
                energy_wh=grown,
                power_w=phase.power_w,
                current_ma=phase.current_ma,
                charging=phase.charging,
            )
        energy += phase.energy_wh
    incremental = meterage.price()
    full = tariff.price(start=start, periods=periods, end=t)
    assert incremental == full
    return incremental


def eur(amount: str) -> Money:
    return Money.from_decimal(Decimal(amount), "EUR")
