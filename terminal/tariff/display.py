"""The price before start, as a driver must see it (AFIR, Regulation (EU) 2023/1804, Art. 5:
the ad-hoc price per kWh, per minute, per session, and any idle fee, shown before the session
starts, VAT included).

`price_display` composes it from the tariff elements active for a session starting at a
given moment (OCPI 2.2.1 mod_tariffs: the first element per dimension whose restrictions
hold, evaluated at duration 0 and 0 kWh). Elements restricted by power or current apply only
when the caller states the power (and current) the station delivers; without it, the
unrestricted fallback element is shown and the display says prices vary.

Unit prices are shown exactly as they are billed (`terminal.core.billing`, rule 1): incl.
VAT, with up to two digits beyond the currency's minor unit per kWh (0.275 EUR) and four per
minute (0.036667 EUR), so the quantity on the receipt times the price shown is the line
billed, to the cent.
A min/max price is shown incl. VAT as it is charged: its `incl_vat` when the tariff gives one,
else the least (most) amount whose VAT-exclusive part meets the bound at the tariff's rate.
The lines are `Phrase`s (message id and values), rendered in the driver's language by the
screen (`terminal.core.words`, catalogs in terminal/locale/).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from terminal.core.billing import gross_unit_price
from terminal.core.words import ENGLISH, N_, Phrase, render
from terminal.money import Money, minor_exponent
from terminal.tariff.model import Price, TariffDimension

if TYPE_CHECKING:
    from terminal.tariff.rules import Plan

__all__ = ["PriceDisplay", "UnitPrice", "price_display"]

_HUNDRED = Decimal(100)
_SIXTY = Decimal(60)

# The message ids of the price lines (gettext catalogs translate them: terminal/locale/);
# `{}` is the formatted amount with its currency code, or a number.
ENERGY = N_("{} per kWh")
TIME = N_("{} per minute charging")
FLAT = N_("{} per session")
PARKING = N_("Idle fee {} per minute")
MIN = N_("Minimum price {}")
MAX = N_("Maximum price {}")
VAT = N_("incl. {}% VAT")
NO_VAT = N_("no VAT")
VARIES = N_("Prices vary with time and use")
FREE = N_("Free of charge")
STEP_TIME = N_("billed per {} min")
STEP_ENERGY = N_("billed per {} Wh")
UP_TO = N_("up to {} per kWh")
UP_TO_TIME = N_("up to {} per minute charging")
UP_TO_FLAT = N_("up to {} per session")
UP_TO_PARKING = N_("Idle fee up to {} per minute")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitPrice:
    """A price component as shown: per kWh, per hour, or per session, excl. VAT."""

    price: Decimal
    vat: Decimal | None
    step_size: int
    currency: str
    up_to: bool = False  # the dearest of several that may apply, by power or current

    @property
    def incl_vat(self) -> Decimal:
        """The unit price incl. VAT as billed (no VAT given means none applies)."""
        return gross_unit_price(self.price, self.vat, self.currency)

    @property
    def per_minute(self) -> Decimal:
        """For TIME and PARKING_TIME: the price per minute incl. VAT as billed."""
        return gross_unit_price(self.price / _SIXTY, self.vat, self.currency, per_minute=True)

    @property
    def per_session(self) -> Decimal:
        """For FLAT: the session fee incl. VAT as billed."""
        return gross_unit_price(self.price, self.vat, self.currency, per_session=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceDisplay:
    """What a session starting now costs, per dimension (None: that dimension is free)."""

    currency: str
    energy: UnitPrice | None
    time: UnitPrice | None
    flat: UnitPrice | None
    parking: UnitPrice | None
    min_price: Decimal | None  # incl. VAT, as charged
    max_price: Decimal | None
    varies: bool

    def phrases(self) -> tuple[Phrase, ...]:
        """The idle screen's price lines, as phrases any language renders."""

        def amount(value: Decimal, extra: int = 2) -> str:
            return f"{_format(value, self.currency, extra)} {self.currency}"

        def priced(msgid: str, up_to: str, price: UnitPrice, value: Decimal, extra: int) -> Phrase:
            return Phrase(up_to if price.up_to else msgid, (amount(value, extra),))

        out: list[Phrase] = []
        shown = [p for p in (self.energy, self.time, self.flat, self.parking) if p is not None]
        if self.energy is not None:
            out.append(priced(ENERGY, UP_TO, self.energy, self.energy.incl_vat, 2))
            if self.energy.step_size > 1:
                out.append(Phrase(STEP_ENERGY, (str(self.energy.step_size),)))
        if self.time is not None:
            out.append(priced(TIME, UP_TO_TIME, self.time, self.time.per_minute, 4))
        if self.flat is not None:
            out.append(priced(FLAT, UP_TO_FLAT, self.flat, self.flat.per_session, 0))
        if self.parking is not None:
            out.append(priced(PARKING, UP_TO_PARKING, self.parking, self.parking.per_minute, 4))
            if self.parking.step_size > 60:
                minutes = Decimal(self.parking.step_size) / _SIXTY
                out.append(Phrase(STEP_TIME, (_plain(minutes),)))
        if self.min_price is not None:
            out.append(Phrase(MIN, (amount(self.min_price, 0),)))
        if self.max_price is not None:
            out.append(Phrase(MAX, (amount(self.max_price, 0),)))
        if not any(p.price for p in shown) and self.min_price is None:
            out.insert(0, Phrase(FREE))
        rates = sorted({p.vat for p in shown if p.vat is not None and p.price})
        if rates:
            out.append(Phrase(VAT, (" / ".join(_plain(r) for r in rates),)))
        elif shown and any(p.price for p in shown):
            out.append(Phrase(NO_VAT))
        if self.varies:
            out.append(Phrase(VARIES))
        return tuple(out)

    def lines(self) -> tuple[str, ...]:
        """The price lines in English (the message ids as they are)."""
        return tuple(render(ENGLISH, phrase) for phrase in self.phrases())


def charged_bound(price: Price, rate: Decimal, currency: str, *, floor: bool) -> Decimal:
    """A min (`floor`) or max price incl. VAT as the engine charges it: `incl_vat` when
    given (and the excl. bound is met by it at `rate`), else the least (floor) or greatest
    gross amount whose part excl. VAT at `rate` meets `excl_vat` (billing rule 3)."""
    exponent = minor_exponent(currency)

    def base(gross: int) -> Decimal:
        tax = Money.from_decimal(
            Decimal(gross).scaleb(-exponent) * rate / (_HUNDRED + rate), currency
        )
        return Decimal(gross - tax.minor).scaleb(-exponent)

    excl = price.excl_vat
    gross = Money.from_decimal(excl * (1 + rate / _HUNDRED), currency).minor
    if floor:
        while gross > 0 and base(gross - 1) >= excl:
            gross -= 1
        while base(gross) < excl:
            gross += 1
    else:
        while base(gross + 1) <= excl:
            gross += 1
        while gross > 0 and base(gross) > excl:
            gross -= 1
    shown = Decimal(gross).scaleb(-exponent)
    if price.incl_vat is None:
        return shown
    return max(shown, price.incl_vat) if floor else min(shown, price.incl_vat)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _format(value: Decimal, currency: str, extra: int) -> str:
    """At least the currency's minor digits, at most `extra` more, rounded half-up."""
    exponent = minor_exponent(currency)
    text = f"{value.quantize(Decimal(1).scaleb(-(exponent + extra)), ROUND_HALF_UP):f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(exponent, "0")
        text = f"{whole}.{frac}" if frac else whole
    return text


def price_display(
    plan: Plan, at_us: int, *, power_w: int | None = None, current_ma: int | None = None
) -> PriceDisplay:
    """The price of a session starting at `at_us` (µs since the epoch)."""
    ok = plan.static_ok(at_us, at_us, 0)

    def shown(dimension: TariffDimension) -> UnitPrice | None:
        # Elements whose electrical restrictions cannot be judged (no power or current
        # given) are candidates; the dearest candidate up to the first element that surely
        # applies is shown as "up to", so the screen never understates the price.
        candidates: list[UnitPrice] = []
        for index in plan.by_dimension[dimension]:
            component = plan.components[index]
            rule = plan.rules[component.element]
            if not ok[component.element]:
                continue
            price = UnitPrice(
                price=component.price,
                vat=component.vat,
                step_size=component.step_size,
                currency=plan.tariff.currency,
            )
            if rule.electrical:
                needs_current = rule.min_ma is not None or rule.max_ma is not None
                needs_power = rule.min_w is not None or rule.max_w is not None
                unknown = (needs_power and power_w is None) or (
                    needs_current and current_ma is None
                )
                if unknown:
                    candidates.append(price)
                    continue
                if not rule.electrical_match(power_w or 0, current_ma or 0):
                    continue
            if not candidates:
                return price
            candidates.append(price)
            break
        if not candidates:
            return None
        dearest = max(candidates, key=lambda p: p.incl_vat)
        return replace(dearest, up_to=True)

    tariff = plan.tariff
    return PriceDisplay(
        currency=tariff.currency,
        energy=shown(TariffDimension.ENERGY),
        time=shown(TariffDimension.TIME),
        flat=shown(TariffDimension.FLAT),
        parking=shown(TariffDimension.PARKING_TIME),
        min_price=None
        if tariff.min_price is None
        else charged_bound(tariff.min_price, plan.vat_rate, tariff.currency, floor=True),
        max_price=None
        if tariff.max_price is None
        else charged_bound(tariff.max_price, plan.vat_rate, tariff.currency, floor=False),
        varies=any(len(indices) > 1 for indices in plan.by_dimension.values()),
    )
