"""The BTC price a Lightning invoice is priced at: where the adapter gets it (`RateSource`),
and LNbits's own (`LnbitsRates`). The rate and its source are recorded on every invoice."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

import requests


class RateUnavailable(Exception):
    """No usable BTC price for a currency right now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """The price of one bitcoin in a currency's major unit, where it came from, and when."""

    btc_price: Decimal
    currency: str
    source: str
    at: datetime


class RateSource(Protocol):
    def quote(self, currency: str) -> Rate:
        """The current rate, or `RateUnavailable`."""
        ...


class LnbitsRates:
    """The rate LNbits publishes at ``GET /api/v1/rate/{currency}``: the mean of the exchange
    providers its operator configured (LNbits settings, "exchange rate providers")."""

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._clock = clock or (lambda: datetime.now(UTC))

    def quote(self, currency: str) -> Rate:
        try:
            answer = requests.get(f"{self._url}/api/v1/rate/{currency}", timeout=self._timeout_s)
            answer.raise_for_status()
            # Parsed as Decimal: no float touches the price.
            price = json.loads(answer.text, parse_float=Decimal, parse_int=Decimal)["price"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise RateUnavailable(f"lnbits rate for {currency}: {type(exc).__name__}") from None
        if not isinstance(price, Decimal) or price <= 0:
            raise RateUnavailable(f"lnbits has no BTC price for {currency}")
        return Rate(
            btc_price=price,
            currency=currency,
            source=f"lnbits {self._url}/api/v1/rate/{currency}",
            at=self._clock(),
        )
