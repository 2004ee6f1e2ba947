"""What a session costs: the tariff port the state machine prices through, and the bill.

A `Tariff` begins a `Meterage` at session start; the machine folds every meter sample into it
with `advance` (an immutable value, so the machine's state stays a value) and asks `total` for
the running cost incl. VAT. `advance` must be O(1) in the session's length: the machine calls it
once per meter sample for sessions of many hours.

Rounding rule (the one place it is written): every line is computed exactly in `Decimal` and
rounded once, half-up, to minor units excl. VAT; VAT is computed per rate on the sum of that
rate's rounded lines and rounded once, half-up; the total incl. VAT is the sum of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from terminal.money import Money

WH_PER_KWH = Decimal(1000)
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True, kw_only=True)
class BillLine:
    """One priced dimension of a session (OCPI CdrDimensionType names)."""

    dimension: str  # "ENERGY", "TIME", "PARKING_TIME", "FLAT"
    quantity: Decimal  # kWh for ENERGY, hours for TIME / PARKING_TIME, 1 for FLAT
    unit: str  # "kWh", "h", "session"
    excl_vat: Money
    vat_percent: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class VatLine:
    """VAT of one rate: the base it applies to and the tax."""

    percent: Decimal
    base: Money
    vat: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Bill:
    """An itemized bill: lines excl. VAT, VAT per rate, totals."""

    lines: tuple[BillLine, ...]
    vat: tuple[VatLine, ...]
    total_excl_vat: Money
    total: Money

    @property
    def total_vat(self) -> Money:
        return self.total - self.total_excl_vat


def make_bill(lines: tuple[BillLine, ...], currency: str) -> Bill:
    """Assemble a bill from rounded lines, applying the VAT rule in the module docstring."""
    by_rate: dict[Decimal, Money] = {}
    for line in lines:
        by_rate[line.vat_percent] = by_rate.get(line.vat_percent, Money.zero(currency)) + (
            line.excl_vat
        )
    vat_lines = tuple(
        VatLine(
            percent=rate,
            base=base,
            vat=Money.from_decimal(base.to_decimal() * rate / HUNDRED, currency),
        )
        for rate, base in sorted(by_rate.items())
    )
    excl = sum((line.excl_vat for line in lines), Money.zero(currency))
    vat = sum((v.vat for v in vat_lines), Money.zero(currency))
    return Bill(lines=lines, vat=vat_lines, total_excl_vat=excl, total=excl + vat)


class Meterage(Protocol):
    """A session's usage so far, priced. Immutable: `advance` returns a new value."""

    def advance(
        self, *, at: datetime, energy_wh: int, power_w: int, current_ma: int, charging: bool
    ) -> Meterage:
        """Fold in a sample taken at `at` (aware UTC): `energy_wh` delivered since the session
        began, the power and current now, and whether energy was flowing since the last
        sample (TIME) or the vehicle was parked (PARKING_TIME)."""
        ...

    def total(self) -> Money:
        """The cost so far incl. VAT, after min/max price."""
        ...

    def bill(self) -> Bill:
        """The itemized bill so far."""
        ...


class Tariff(Protocol):
    """An operator's tariff, as the session machine uses it."""

    @property
    def name(self) -> str: ...

    @property
    def currency(self) -> str: ...

    def begin(self, start: datetime) -> Meterage:
        """Start pricing a session that began at `start` (aware UTC)."""
        ...

    def price_lines(self, at: datetime) -> tuple[str, ...]:
        """The price before start, as short lines for the idle screen (AFIR: per kWh,
        per minute, session fee, idle fee, VAT included), valid at `at`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyTariff:
    """The simplest tariff: a price per kWh excl. VAT, an optional session fee, one VAT rate.

    Kept as the default for a kiosk configured without an OCPI tariff file."""

    name: str
    currency: str
    per_kwh: Decimal  # excl. VAT, major units
    session_fee: Decimal = Decimal(0)  # excl. VAT, major units
    vat_percent: Decimal = Decimal(0)

    def begin(self, start: datetime) -> EnergyMeterage:
        return EnergyMeterage(tariff=self)

    def price_lines(self, at: datetime) -> tuple[str, ...]:
        factor = 1 + self.vat_percent / HUNDRED
        lines = [f"{_major(self.per_kwh * factor, self.currency)} per kWh"]
        if self.session_fee:
            lines.append(f"{_major(self.session_fee * factor, self.currency)} per session")
        lines.append(f"incl. {self.vat_percent.normalize():f}% VAT")
        return tuple(lines)


def _major(amount: Decimal, currency: str) -> str:
    return Money.from_decimal(amount, currency).format()


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyMeterage:
    """Usage under an `EnergyTariff`: only the energy matters."""

    tariff: EnergyTariff
    energy_wh: int = 0
    _bill: Bill | None = field(default=None, compare=False)

    def advance(
        self, *, at: datetime, energy_wh: int, power_w: int, current_ma: int, charging: bool
    ) -> EnergyMeterage:
        return replace(self, energy_wh=max(self.energy_wh, energy_wh), _bill=None)

    def bill(self) -> Bill:
        t = self.tariff
        kwh = Decimal(self.energy_wh) / WH_PER_KWH
        lines = [
            BillLine(
                dimension="ENERGY",
                quantity=kwh,
                unit="kWh",
                excl_vat=Money.from_decimal(kwh * t.per_kwh, t.currency),
                vat_percent=t.vat_percent,
            )
        ]
        if t.session_fee:
            lines.append(
                BillLine(
                    dimension="FLAT",
                    quantity=Decimal(1),
                    unit="session",
                    excl_vat=Money.from_decimal(t.session_fee, t.currency),
                    vat_percent=t.vat_percent,
                )
            )
        return make_bill(tuple(lines), t.currency)

    def total(self) -> Money:
        return self.bill().total
