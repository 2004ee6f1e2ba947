"""Money as integer minor units of an ISO 4217 currency.

No float ever touches an amount: arithmetic on `Money` is integer arithmetic, and conversion
from a `Decimal` price rounds once, half-up (the commercial rule most tariffs and receipts use).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor-unit exponents for the currencies a kiosk in Europe and beyond prices in.
# Source: ISO 4217 list one (SIX Group), column "Minor unit".
MINOR_UNITS: dict[str, int] = {
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HUF": 2,
    "RON": 2,
    "BGN": 2,
    "ISK": 0,
    "USD": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "KWD": 3,
    "BHD": 3,
}

# ISO 4217 numeric codes, used by the EMV kernel (tag 5F2A) and the wire contract.
NUMERIC_CODES: dict[str, int] = {
    "EUR": 978,
    "GBP": 826,
    "CHF": 756,
    "SEK": 752,
    "NOK": 578,
    "DKK": 208,
    "PLN": 985,
    "CZK": 203,
    "HUF": 348,
    "RON": 946,
    "BGN": 975,
    "ISK": 352,
    "USD": 840,
    "CAD": 124,
    "AUD": 36,
    "NZD": 554,
    "JPY": 392,
    "KRW": 410,
    "CLP": 152,
    "KWD": 414,
    "BHD": 48,
}


def minor_exponent(currency: str) -> int:
    """The number of minor-unit digits of `currency`; ValueError for an unknown code."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"unknown ISO 4217 currency: {currency!r}") from None


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in integer minor units of an ISO 4217 currency (`Money(1234, "EUR")`)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise TypeError("Money.minor must be an int")
        minor_exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(cls, major: Decimal, currency: str) -> Money:
        """Round a major-unit `Decimal` once, half-up, to minor units."""
        exponent = minor_exponent(currency)
        quantum = Decimal(1).scaleb(-exponent)
        rounded = major.quantize(quantum, rounding=ROUND_HALF_UP)
        return cls(int(rounded.scaleb(exponent)), currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-minor_exponent(self.currency))

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def format(self) -> str:
        """`12.34 EUR`: the amount with its minor digits and the code, for screens and logs."""
        exponent = minor_exponent(self.currency)
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exponent)
        if exponent == 0:
            return f"{sign}{whole} {self.currency}"
        return f"{sign}{whole}.{frac:0{exponent}d} {self.currency}"

    def __str__(self) -> str:
        return self.format()
