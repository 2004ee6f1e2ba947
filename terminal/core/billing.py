"""What a session costs: the tariff port the state machine prices through, and the bill.

A `Tariff` begins a `Meterage` at session start; the machine folds every meter sample into it
with `advance` (an immutable value, so the machine's state stays a value) and asks `total` for
the running cost incl. VAT. `advance` must be O(1) in the session's length: the machine calls it
once per meter sample for sessions of many hours.

Rounding rule (the one place it is written; docs/tariffs.md repeats it for drivers):
1. A unit price is shown and billed incl. VAT: the price excl. VAT times (1 + VAT/100), rounded
   once, half-up, to two digits beyond the currency's minor unit per kWh (0.3277 EUR excl. 19 %
   is 0.3900 EUR, shown "0.39 EUR"), four beyond it per minute (2.00 EUR per hour excl. 10 %
   is 0.036667 EUR per minute: 150 minutes cost 5.50, as 2.5 hours at 2.20 do), and to the
   minor unit per session (`gross_unit_price`). Trailing zeros are not shown.
2. A line costs its quantity in the shown unit (kWh, minutes, sessions) times that shown unit
   price, rounded once, half-up, to minor units: 1.214 kWh at 0.3900 EUR is 0.47 EUR, so a
   driver reproduces every line from the screen and the receipt.
3. VAT is taken out per rate from the sum of that rate's lines: VAT = gross * rate / (100 +
   rate), rounded half-up; the base excl. VAT is the rest. Each line's amount excl. VAT is its
   share of that base (largest remainder), so the lines excl. VAT add up to the base.
4. The total is the sum of the lines incl. VAT. min/max price and the authorized amount
   (`limit_to`) adjust it by lines of their own, so the receipt always adds up to what is
   captured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Protocol

from terminal.core.words import ENGLISH, Phrase, render
from terminal.money import Money, minor_exponent

WH_PER_KWH = Decimal(1000)
HUNDRED = Decimal(100)
UNIT_EXTRA_DIGITS = 2  # digits of a price per kWh beyond the currency's minor unit (rule 1)
MINUTE_EXTRA_DIGITS = 4  # per minute: a tariff's hourly price / 60 stays within 0.0001 per h
LIMIT = "LIMIT"  # the dimension of the line that brings a bill down to the authorized amount


def gross_unit_price(
    price_excl: Decimal,
    vat_percent: Decimal | None,
    currency: str,
    *,
    per_session: bool = False,
    per_minute: bool = False,
) -> Decimal:
    """The unit price incl. VAT that is shown and billed (rule 1 of the module docstring)."""
    extra = 0 if per_session else MINUTE_EXTRA_DIGITS if per_minute else UNIT_EXTRA_DIGITS
    digits = minor_exponent(currency) + extra
    gross = price_excl * (1 + (vat_percent or 0) / HUNDRED)
    return gross.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Money:
    """A line's amount incl. VAT: quantity in the shown unit * shown unit price (rule 2)."""
    return Money.from_decimal(quantity * unit_price, currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class BillLine:
    """One priced dimension of a session (OCPI CdrDimensionType names), or an adjustment
    (MIN_PRICE, MAX_PRICE, LIMIT). `incl_vat` is what the line costs; `excl_vat` is its share
    of its rate's base, set by `make_bill`."""

    dimension: str  # "ENERGY", "TIME", "PARKING_TIME", "FLAT", "MIN_PRICE", "MAX_PRICE", "LIMIT"
    quantity: Decimal  # kWh for ENERGY, hours for TIME / PARKING_TIME, 1 for FLAT
    unit: str  # "kWh", "h", "session"
    incl_vat: Money
    vat_percent: Decimal
    unit_price: Decimal | None = None  # incl. VAT per kWh, per minute or per session
    excl_vat: Money = field(default=Money(0, "EUR"))  # replaced by make_bill


@dataclass(frozen=True, slots=True, kw_only=True)
class VatLine:
    """VAT of one rate: the base it applies to and the tax."""

    percent: Decimal
    base: Money
    vat: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Bill:
    """An itemized bill: lines incl. and excl. VAT, VAT per rate, totals."""

    lines: tuple[BillLine, ...]
    vat: tuple[VatLine, ...]
    total_excl_vat: Money
    total: Money

    @property
    def total_vat(self) -> Money:
        return self.total - self.total_excl_vat

    @property
    def limited(self) -> bool:
        """Whether the authorized amount cut the bill down (a `LIMIT` line)."""
        return any(line.dimension == LIMIT for line in self.lines)


def make_bill(lines: Iterable[BillLine], currency: str) -> Bill:
    """Assemble a bill from lines priced incl. VAT, by rules 3 and 4 of the module docstring."""
    lines = tuple(lines)
    by_rate: dict[Decimal, list[int]] = {}
    for index, line in enumerate(lines):
        by_rate.setdefault(line.vat_percent, []).append(index)
    excl: dict[int, Money] = {}
    vat_lines: list[VatLine] = []
    for rate in sorted(by_rate):
        members = by_rate[rate]
        gross = sum((lines[i].incl_vat for i in members), Money.zero(currency))
        tax = Money.from_decimal(gross.to_decimal() * rate / (HUNDRED + rate), currency)
        base = gross - tax
        shares = [lines[i].incl_vat.minor * HUNDRED / (HUNDRED + rate) for i in members]
        for i, minor in zip(members, _allocate(base.minor, shares), strict=True):
            excl[i] = Money(minor, currency)
        vat_lines.append(VatLine(percent=rate, base=base, vat=tax))
    priced = tuple(replace(line, excl_vat=excl[i]) for i, line in enumerate(lines))
    total = sum((line.incl_vat for line in lines), Money.zero(currency))
    total_excl = sum((v.base for v in vat_lines), Money.zero(currency))
    return Bill(lines=priced, vat=tuple(vat_lines), total_excl_vat=total_excl, total=total)


def _allocate(total: int, shares: list[Decimal]) -> list[int]:
    """Integers near `shares` that add up to `total` (largest remainder; ties to the first)."""
    floors = [int(s.to_integral_value(ROUND_FLOOR)) for s in shares]
    left = total - sum(floors)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for k in range(abs(left)):
        floors[order[k % len(order)]] += 1 if left > 0 else -1
    return floors


def limit_to(bill: Bill, cap: Money) -> Bill:
    """The bill cut down to `cap` (the authorized amount) when it is over: one `LIMIT` line per
    VAT rate, shared in proportion to each rate's gross, so the total is exactly `cap` and the
    VAT stays true (a power jump between two samples can carry the cost past the cap before the
    contactor opens; the driver pays no more than was authorized)."""
    if bill.total <= cap:
        return bill
    currency = cap.currency
    cut = bill.total - cap
    gross = [(v.percent, v.base + v.vat) for v in bill.vat if (v.base + v.vat).minor > 0]
    whole = sum(g.minor for _, g in gross)
    parts = _allocate(cut.minor, [Decimal(cut.minor * g.minor) / whole for _, g in gross])
    adjustments = (
        BillLine(
            dimension=LIMIT,
            quantity=Decimal(1),
            unit="session",
            incl_vat=Money(-part, currency),
            vat_percent=rate,
        )
        for (rate, _), part in zip(gross, parts, strict=True)
        if part
    )
    return make_bill((*bill.lines, *adjustments), currency)


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

    def price_phrases(self, at: datetime) -> tuple[Phrase, ...]:
        """The price before start, as short lines for the idle screen (AFIR: per kWh,
        per minute, session fee, idle fee, VAT included), valid at `at`, in any language."""
        ...

    def price_lines(self, at: datetime) -> tuple[str, ...]:
        """`price_phrases` in English."""
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

    def price_phrases(self, at: datetime) -> tuple[Phrase, ...]:
        # The same message ids as the OCPI tariff's lines (terminal.tariff.display).
        lines = [Phrase("{} per kWh", (format_unit_price(self.unit_price, self.currency),))]
        if self.session_fee:
            fee = format_unit_price(self.fee_price, self.currency)
            lines.append(Phrase("{} per session", (fee,)))
        lines.append(Phrase("incl. {}% VAT", (f"{self.vat_percent.normalize():f}",)))
        return tuple(lines)

    def price_lines(self, at: datetime) -> tuple[str, ...]:
        return tuple(render(ENGLISH, phrase) for phrase in self.price_phrases(at))

    @property
    def unit_price(self) -> Decimal:
        """The price per kWh incl. VAT, as shown and billed."""
        return gross_unit_price(self.per_kwh, self.vat_percent, self.currency)

    @property
    def fee_price(self) -> Decimal:
        """The session fee incl. VAT, as shown and billed."""
        return gross_unit_price(self.session_fee, self.vat_percent, self.currency, per_session=True)


def format_unit_price(value: Decimal, currency: str) -> str:
    """A shown unit price with its currency code: at least the currency's minor digits, the
    extra digits only where they are not zero ("0.39 EUR", "0.3277 EUR")."""
    exponent = minor_exponent(currency)
    text = f"{value:f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(exponent, "0")
        text = f"{whole}.{frac}" if frac else whole
    elif exponent:
        text = f"{text}.{'0' * exponent}"
    return f"{text} {currency}"


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
                incl_vat=line_amount(kwh, t.unit_price, t.currency),
                vat_percent=t.vat_percent,
                unit_price=t.unit_price,
            )
        ]
        if t.session_fee:
            lines.append(
                BillLine(
                    dimension="FLAT",
                    quantity=Decimal(1),
                    unit="session",
                    incl_vat=Money.from_decimal(t.fee_price, t.currency),
                    vat_percent=t.vat_percent,
                    unit_price=t.fee_price,
                )
            )
        return make_bill(lines, t.currency)

    def total(self) -> Money:
        return self.bill().total
