"""Each adapter wired to its local peer, as one `Harness` the conformance suite runs over.

The suite holds every adapter to the same assertions; what differs between processors is
declared by the adapter itself (`Processor.capabilities`) and bridged here, never in the
suite:
- `settle`: the final outcome of a call. Most answers are final as they come. A prepaid hold
  (`Capability.PREPAID`, Lightning) answers pending with an invoice: here the payer's wallet
  pays it (or, for the declining "card", lets it expire) and the hold is asked again with the
  same key, which the adapter answers approved or declined. A modification of a notified
  processor (`Capability.NOTIFIED`, Adyen) answers pending: here the processor's notification
  about it is taken and mapped by the adapter's own `parse_webhook`.
- `state`: what the processor's own record says about a payment: its `status` where it has
  one (`Capability.STATUS`), else the fold of the payment's notifications, each parsed by the
  adapter (Adyen publishes no status; its notifications are its record).
- `keys_seen`: the gateway keys the processor received, where it takes them (Stripe's and
  Adyen's ``Idempotency-Key`` header, the ``extra`` LNbits keeps with each payment, the
  simulated processor's request book).
- `peer_saw`: whether some bytes reached the processor's side at all.
- `destination`: where a refund goes for `Capability.REFUND_TO_DESTINATION` (an invoice from
  the driver's wallet for the refunded amount at the payment's rate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.schema import sim_payments, sim_requests
from gateway.processors import CardRef
from gateway.processors.lightning_change import sats_for
from gateway.processors.port import (
    Capability,
    Outcome,
    PaymentState,
    PaymentStatus,
    Processor,
    Result,
    WebhookKind,
)
from terminal.money import Money
from tests.processors.adyen_books import AdyenBooks
from tests.processors.peers import Exchange, RecordingProxy
from tests.processors.stack import Lnbits, Wallet


@dataclass
class Harness:
    """An adapter wired to its peer, the peer's test cards, and the bridges above."""

    name: str
    processor: Processor
    currency: str
    approving: Callable[[], CardRef]
    declining: Callable[[], CardRef]
    unreachable: Processor  # the same adapter pointed at a port where nothing listens
    secrets: tuple[str, ...]  # what must never be logged: keys, webhook secrets, card numbers
    unknown_reference: str  # a reference of this processor's shape that it never issued
    over_http: bool = True  # False for the simulated processor: no SDK or HTTP client logs

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.processor.capabilities

    def settle(self, result: Result, *, hold: dict[str, Any] | None = None) -> Result:
        """The call's final outcome (`hold`: the hold's own arguments, to ask it again)."""
        return result

    def state(self, reference: str) -> PaymentStatus:
        return self.processor.status(payment_id="", reference=reference)

    def keys_seen(self) -> set[str]:
        raise NotImplementedError

    def peer_saw(self, data: bytes) -> bool:
        raise NotImplementedError

    def destination(self, amount: Money) -> str | None:
        return None


def _posted(exchanges: list[Exchange], header: str) -> set[str]:
    wanted = header.lower()
    return {
        v
        for ex in exchanges
        if ex.method == "POST"
        for k, v in ex.headers.items()
        if k.lower() == wanted
    }


@dataclass
class SimulatedHarness(Harness):
    engine: Engine | None = None

    def keys_seen(self) -> set[str]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return {str(k) for k in conn.execute(sa.select(sim_requests.c.key)).scalars()}

    def peer_saw(self, data: bytes) -> bool:
        assert self.engine is not None
        with self.engine.connect() as conn:
            books = [
                dict(r._mapping)
                for t in (sim_payments, sim_requests)
                for r in conn.execute(sa.select(t))
            ]
        return data.decode() in repr(books)


@dataclass
class StripeHarness(Harness):
    proxy: RecordingProxy | None = None

    def keys_seen(self) -> set[str]:
        assert self.proxy is not None
        return _posted(self.proxy.exchanges, "Idempotency-Key")

    def peer_saw(self, data: bytes) -> bool:
        assert self.proxy is not None
        return any(data in ex.body for ex in self.proxy.exchanges)


@dataclass
class AdyenHarness(Harness):
    books: AdyenBooks | None = None

    def settle(self, result: Result, *, hold: dict[str, Any] | None = None) -> Result:
        if result.outcome is not Outcome.PENDING or hold is not None:
            return result
        assert self.books is not None
        # The newest notification about the payment is the one about this modification.
        notices = self.books.notifications(result.reference)
        assert notices, f"adyen sent no notification about {result.reference}"
        event = self.processor.parse_webhook(
            headers={"Content-Type": "application/json"}, body=notices[-1]
        )
        if event.kind is WebhookKind.DECLINED:
            zero = Money.zero(event.amount.currency)
            return Result(
                outcome=Outcome.DECLINED, amount=zero, reference=event.reference, error=event.error
            )
        amount = (
            Money.zero(event.amount.currency)
            if event.kind is WebhookKind.RELEASED
            else event.amount
        )
        return Result(outcome=Outcome.APPROVED, amount=amount, reference=event.reference)

    def state(self, reference: str) -> PaymentStatus:
        """The payment as its notifications tell it, each parsed by the adapter."""
        assert self.books is not None
        notices = self.books.notifications(reference)
        if not notices:
            return PaymentStatus(
                state=PaymentState.NOT_FOUND,
                reference=reference,
                held=None,
                captured=None,
                refunded=None,
            )
        state, held, captured, refunded = PaymentState.PENDING, 0, 0, 0
        currency = self.currency
        for body in notices:
            event = self.processor.parse_webhook(headers={}, body=body)
            currency = event.amount.currency
            minor = event.amount.minor
            if event.kind is WebhookKind.DECLINED:
                if event.raw.get("eventCode") == "AUTHORISATION":
                    state = PaymentState.DECLINED
            elif event.kind is WebhookKind.HELD:
                state, held = PaymentState.HELD, minor
            elif event.kind is WebhookKind.CAPTURED:
                state, captured = PaymentState.CAPTURED, minor
            elif event.kind is WebhookKind.RELEASED:
                state = PaymentState.RELEASED
            elif event.kind is WebhookKind.REFUNDED:
                refunded += minor
        return PaymentStatus(
            state=state,
            reference=reference,
            held=Money(held, currency),
            captured=Money(captured, currency),
            refunded=Money(refunded, currency),
        )

    def keys_seen(self) -> set[str]:
        assert self.books is not None
        return _posted(self.books.exchanges, "Idempotency-Key")

    def peer_saw(self, data: bytes) -> bool:
        assert self.books is not None
        return any(data in ex.body for ex in self.books.exchanges)


@dataclass
class LightningHarness(Harness):
    proxy: RecordingProxy | None = None
    lnbits: Lnbits | None = None
    driver: Wallet | None = None
    btc_price: Decimal = Decimal(0)
    expiry_s: float = 0.0
    never_pays: set[str] = field(default_factory=set)  # tokens of the "declining" wallet

    def settle(self, result: Result, *, hold: dict[str, Any] | None = None) -> Result:
        if result.outcome is not Outcome.PENDING or hold is None:
            return result
        assert self.lnbits is not None and self.driver is not None
        if hold["card"].token in self.never_pays:
            time.sleep(self.expiry_s + 1.0)  # the payer walks away; the invoice expires
        else:
            self.lnbits.pay(self.driver, str(result.raw["bolt11"]))
        return self.processor.hold(**hold)

    def keys_seen(self) -> set[str]:
        assert self.proxy is not None
        keys: set[str] = set()
        for ex in self.proxy.exchanges:
            if ex.method in ("POST", "PATCH") and ex.body:
                extra = json.loads(ex.body).get("extra") or {}
                keys |= {
                    str(extra[k])
                    for k in ("gateway_key", "capture_key", "release_key")
                    if k in extra
                }
        return keys

    def peer_saw(self, data: bytes) -> bool:
        assert self.proxy is not None
        return any(data in ex.body for ex in self.proxy.exchanges)

    def destination(self, amount: Money) -> str | None:
        assert self.lnbits is not None and self.driver is not None
        return self.lnbits.invoice(self.driver, sats_for(amount, self.btc_price))
