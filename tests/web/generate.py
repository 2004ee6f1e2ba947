"""Sessions generated through the gateway's real money steps (hold, capture, refund) at chosen
times, in several currencies and stations, each with a receipt that breaks out VAT as the kiosk
does. The generator keeps its own record of what it did, so a test can check the console's
figures against it and against the ledger."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gateway import wire
from gateway.ledger.store import aware, insert_new
from gateway.ledger.web_schema import stations
from gateway.payments import Payments
from tests.web.console_app import Clock

# (currency, VAT rate %, smallest and largest session in minor units)
CURRENCIES = [
    ("EUR", "19", 150, 9000),
    ("GBP", "20", 120, 7000),
    ("JPY", "10", 300, 1000),
    ("SEK", "25", 900, 60000),
]
STATIONS = [
    ("KIOSK-0001", "Berlin Mitte", "Mitte 1"),
    ("KIOSK-0002", "Berlin Mitte", "Mitte 2"),
    ("KIOSK-0003", "Hamburg Hafen", "Hafen 1"),
    ("KIOSK-0004", "Hamburg Hafen", "Hafen 2"),
    ("KIOSK-0005", "", ""),  # a terminal the console knows nothing about
]
BRANDS = ["Visa", "Mastercard", "Girocard"]


def _store(_conn: Any, _answer: Any) -> None:
    """The money steps store the request's answer for its idempotency key; there is none here."""


def vat_of(gross: int, percent: str) -> int:
    """The VAT in a gross amount (taken out once, half up; as the kiosk's receipts do)."""
    excl = (Decimal(gross) / (1 + Decimal(percent) / 100)).quantize(Decimal(1), ROUND_HALF_UP)
    return gross - int(excl)


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    kind: str  # capture | refund
    at: datetime
    amount: int
    vat: int
    currency: str
    terminal: str
    brand: str
    receipt_id: str = ""


@dataclass
class Generator:
    payments: Payments
    clock: Clock
    seed: int = 1
    done: list[Done] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        with self.payments.ledger.engine.begin() as conn:
            for terminal, site, name in STATIONS:
                if site:
                    insert_new(
                        conn,
                        stations,
                        terminal_id=terminal,
                        site=site,
                        name=name,
                        address="",
                        timezone="Europe/Berlin",
                    )

    def session(
        self,
        at: datetime,
        *,
        currency: str | None = None,
        terminal: str | None = None,
        kind: str = "payment",
        token: str | None = None,
        last4: str | None = None,
    ) -> str:
        """One captured session at `at`; its authorization id."""
        self._n += 1
        code, percent, low, high = (
            next(c for c in CURRENCIES if c[0] == currency)
            if currency
            else self.rng.choice(CURRENCIES)
        )
        terminal = terminal or self.rng.choice(STATIONS)[0]
        brand = self.rng.choice(BRANDS)
        gross = self.rng.randint(low, high)
        aid = f"gen-{self.seed}-{self._n:06d}"
        receipt_id = f"R{self.seed:03d}{self._n:08d}"
        self.clock.now = at
        answer = self.payments.authorize(
            wire.AuthorizationRequest(
                authorization_id=aid,
                terminal_id=terminal,
                amount=wire.Amount(minor=high, currency=code),
                card=wire.CardIn(
                    kind=kind,  # type: ignore[arg-type]
                    token=token or f"tok-{self._n:012d}",
                    brand=brand,
                    # not a simulated test card; an RFID token has none (the kiosk sends "")
                    last4=f"{self._n % 9000 + 1000:04d}" if last4 is None else last4,
                ),
            ),
            _store,
        )
        assert answer.body["status"] == "approved", answer.body
        self.clock.now = at + timedelta(seconds=1)
        vat = vat_of(gross, percent)
        receipt = wire.Receipt(
            receipt_id=receipt_id,
            station=terminal,
            tariff="Standard",
            card=f"{brand} **** {self._n % 9000 + 1000:04d}",
            started_at=at.isoformat(),
            ended_at=(at + timedelta(minutes=40)).isoformat(),
            energy_wh=10_000,
            currency=code,
            lines=[
                wire.ReceiptLine(
                    dimension="ENERGY",
                    quantity="10",
                    unit="kWh",
                    excl_vat=gross - vat,
                    vat_percent=percent,
                )
            ],
            vat=[wire.ReceiptVat(percent=percent, base=gross - vat, vat=vat)],
            total_excl_vat=gross - vat,
            total=gross,
        )
        captured = self.payments.capture(
            aid,
            wire.CaptureRequest(
                amount=wire.Amount(minor=gross, currency=code), energy_wh=10_000, receipt=receipt
            ),
            _store,
        )
        assert captured.body["status"] == "captured", captured.body
        self.done.append(
            Done(
                kind="capture",
                at=self.clock.now,
                amount=gross,
                vat=vat,
                currency=code,
                terminal=terminal,
                brand=brand,
                receipt_id=receipt_id,
            )
        )
        return aid

    def refund(self, aid: str, minor: int, at: datetime) -> None:
        row = self.payments.ledger.fetch(aid)
        assert row is not None
        self.clock.now = at
        answer = self.payments.refund(
            aid,
            wire.RefundRequest(
                amount=wire.Amount(minor=minor, currency=row.currency), reason="test refund"
            ),
            f"refund-{aid}-{at.timestamp()}",
            _store,
        )
        assert answer.status_code == 200, answer.body
        self.done.append(
            Done(
                kind="refund",
                at=at,
                amount=minor,
                vat=0,
                currency=row.currency,
                terminal=row.terminal_id,
                brand=row.card_brand,
            )
        )

    def month(self, first: datetime, sessions: int) -> list[str]:
        """`sessions` captured at random times in the 30 days from `first`, some of them
        refunded (fully or in part) a few hours later; their authorization ids."""
        ids = []
        offsets = sorted(self.rng.randint(0, 30 * 24 * 3600 - 7200) for _ in range(sessions))
        for offset in offsets:
            at = first + timedelta(seconds=offset)
            aid = self.session(at)
            ids.append(aid)
        for aid in self.rng.sample(ids, max(1, sessions // 6)):
            row = self.payments.ledger.fetch(aid)
            assert row is not None
            captured = int(row.amount_captured)
            minor = captured if self.rng.random() < 0.5 else self.rng.randint(1, captured - 1)
            self.refund(aid, minor, aware(row.created_at) + timedelta(hours=3))
        return ids
