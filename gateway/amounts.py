"""Which amounts the gateway accepts: ISO 4217 currencies with their minor-unit exponent, and a
ceiling per currency, checked before anything is stored or sent to a processor.

The currency list and exponents come from the `iso4217` package (the ISO 4217 maintenance
agency's list one, as published by SIX). Codes without a minor unit (precious metals, XXX,
testing codes) are refused: no charging session is priced in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import iso4217

from terminal.money import Money


class AmountRefused(ValueError):
    """An amount or currency the gateway does not take; the message names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent of an active currency; AmountRefused otherwise."""
    try:
        found = iso4217.Currency(currency)
    except ValueError:
        raise AmountRefused("unknown_currency", f"{currency} is not an ISO 4217 currency") from None
    if found.exponent is None:
        raise AmountRefused("unknown_currency", f"{currency} has no minor unit")
    return int(found.exponent)


@dataclass(frozen=True, slots=True, kw_only=True)
class AmountLimits:
    """The most one hold (after increments) may be, in major units of any currency: 1000
    means 1000.00 EUR, 1000 JPY, 1000.000 KWD. An operator who prices in a currency with a
    small unit (HUF, JPY) raises it."""

    max_major: Decimal = Decimal(1000)

    def ceiling(self, currency: str) -> int:
        return int(self.max_major.scaleb(exponent(currency)))

    def check(self, minor: int, currency: str) -> Money:
        """The amount as `Money`, if it is positive and at most the ceiling."""
        ceiling = self.ceiling(currency)
        if minor <= 0:
            raise AmountRefused("amount_invalid", "the amount must be positive")
        if minor > ceiling:
            raise AmountRefused(
                "amount_too_large", f"the amount is above the ceiling of {ceiling} {currency}"
            )
        return _money(minor, currency)


def _money(minor: int, currency: str) -> Money:
    try:
        return Money(minor, currency)
    except ValueError:
        raise AmountRefused(
            "unsupported_currency", f"{currency} is not a currency this gateway settles"
        ) from None
