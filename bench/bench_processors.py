"""Processor adapters against their local peers: hold, capture and refund latency added by the
adapter over the peer's own answer time, median and p99, all adapters in one run.

Each adapter talks to its peer (localstripe, Prism over Adyen's OpenAPI document, LNbits with
FakeWallet) through a recording proxy that times every exchange from the first byte forwarded to
the whole answer read. Added time = the call's wall time - the sum of its exchanges' peer time:
the adapter, its SDK (request building, JSON, error mapping) and one loopback hop through the
proxy per request. Calls that make several requests (Stripe's refund checks the capture first;
Lightning looks up, quotes and creates) count every request's peer time as the peer's.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.lightning import LightningProcessor, LnbitsRates, sats_for
from gateway.processors.methods import LIGHTNING, WEB_CARD
from gateway.processors.stripe import StripeProcessor
from terminal.money import Money
from tests.processors.peers import RecordingProxy
from tests.processors.stack import (
    STRIPE_APPROVE,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    start_lnbits,
    start_localstripe,
    start_prism,
    stripe_payment_method,
)

ROUNDS = {"stripe": 100, "adyen": 100, "lightning": 40}
ENCRYPTED_CARD = {
    "type": "scheme",
    "encryptedCardNumber": "test_4111111111111111",
    "encryptedExpiryMonth": "test_03",
    "encryptedExpiryYear": "test_2030",
    "encryptedSecurityCode": "test_737",
}


class Timings:
    def __init__(self) -> None:
        self.added: dict[str, list[float]] = {}
        self.peer: dict[str, list[float]] = {}

    def time(self, proxy: RecordingProxy, op: str, call: Callable[[], Any]) -> Any:
        before = len(proxy.exchanges)
        started = time.perf_counter()
        result = call()
        wall = time.perf_counter() - started
        peer = sum(ex.peer_seconds for ex in proxy.exchanges[before:])
        self.added.setdefault(op, []).append(wall - peer)
        self.peer.setdefault(op, []).append(peer)
        if not result.succeeded and result.outcome.value != "pending":
            raise SystemExit(f"{op} failed: {result}")
        return result

    def report(self, adapter: str) -> None:
        for op, added in self.added.items():
            peer = self.peer[op]
            print(
                f"{adapter:9s} {op:8s} n={len(added):3d}  added median {_ms(_median(added))}"
                f"  p99 {_ms(_p99(added))}   peer median {_ms(_median(peer))}"
                f"  p99 {_ms(_p99(peer))}"
            )


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def _key() -> str:
    return uuid.uuid4().hex


def bench_stripe(logs: Path) -> None:
    peer = start_localstripe(logs)
    proxy = RecordingProxy(peer.url).start()
    try:
        adapter = StripeProcessor(
            account="acct_bench",
            api_key=STRIPE_KEY,
            webhook_secret=STRIPE_WEBHOOK_SECRET,
            api_base=proxy.url,
        )
        t = Timings()
        for _ in range(ROUNDS["stripe"]):
            card = stripe_payment_method(peer.url, STRIPE_APPROVE)
            hold = t.time(
                proxy,
                "hold",
                lambda card=card: adapter.hold(
                    key=_key(), payment_id=_key(), card=card, amount=Money(5000, "EUR")
                ),
            )
            ref = hold.reference
            t.time(
                proxy,
                "capture",
                lambda ref=ref: adapter.capture(
                    key=_key(), reference=ref, amount=Money(3000, "EUR")
                ),
            )
            t.time(
                proxy,
                "refund",
                lambda ref=ref: adapter.refund(
                    key=_key(), reference=ref, amount=Money(1000, "EUR")
                ),
            )
        t.report("stripe")
    finally:
        proxy.close()
        peer.close()


def bench_adyen(logs: Path) -> None:
    peer = start_prism(logs)
    proxy = RecordingProxy(peer.url).start()
    try:
        adapter = AdyenProcessor(
            account="EvChargingECOM",
            api_key="AQE_bench",
            hmac_key="00" * 32,
            checkout_url=proxy.url,
            return_url="https://pay.example.org/return",
        )
        card = CardRef(
            kind=WEB_CARD,
            token="",
            brand="visa",
            last4="1111",
            expiry="3003",
            payload=ENCRYPTED_CARD,
        )
        t = Timings()
        for _ in range(ROUNDS["adyen"]):
            proxy.prefer = "example=card-securedfields"
            hold = t.time(
                proxy,
                "hold",
                lambda: adapter.hold(
                    key=_key(), payment_id=_key(), card=card, amount=Money(5000, "EUR")
                ),
            )
            proxy.prefer = None
            ref = hold.reference
            t.time(
                proxy,
                "capture",
                lambda ref=ref: adapter.capture(
                    key=_key(), reference=ref, amount=Money(3000, "EUR")
                ),
            )
            t.time(
                proxy,
                "refund",
                lambda ref=ref: adapter.refund(
                    key=_key(), reference=ref, amount=Money(1000, "EUR")
                ),
            )
        t.report("adyen")
    finally:
        proxy.close()
        peer.close()


def bench_lightning(logs: Path) -> None:
    server, close = start_lnbits(logs)
    proxy = RecordingProxy(server.url).start()
    try:
        operator = server.wallet("operator", sats=10_000_000)
        driver = server.wallet("driver", sats=10_000_000)
        adapter = LightningProcessor(
            account="op-wallet",
            url=proxy.url,
            invoice_key=operator.invoice_key,
            admin_key=operator.admin_key,
            rates=LnbitsRates(proxy.url),
        )
        wallet = CardRef(kind=LIGHTNING, token="", brand="", last4="", expiry=None, payload={})
        t = Timings()
        for _ in range(ROUNDS["lightning"]):
            hold = t.time(
                proxy,
                "hold",
                lambda: adapter.hold(
                    key=_key(), payment_id=_key(), card=wallet, amount=Money(500, "EUR")
                ),
            )
            server.pay(driver, str(hold.raw["bolt11"]))
            ref = hold.reference
            t.time(
                proxy,
                "capture",
                lambda ref=ref: adapter.capture(
                    key=_key(), reference=ref, amount=Money(300, "EUR")
                ),
            )
            # The driver's invoice for 1.00 EUR at the rate the payment was made at.
            sats = sats_for(Money(100, "EUR"), Decimal(str(hold.raw["btc_price"])))
            bolt11 = server.invoice(driver, sats)
            t.time(
                proxy,
                "refund",
                lambda ref=ref, bolt11=bolt11: adapter.pay_out(
                    key=_key(), reference=ref, amount=Money(100, "EUR"), invoice=bolt11
                ),
            )
        t.report("lightning")
    finally:
        proxy.close()
        close()


def main() -> int:
    print("processor adapters: time added over the peer's own answer (see module docstring)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("stripe", bench_stripe),
            ("adyen", bench_adyen),
            ("lightning", bench_lightning),
        ):
            logs = Path(tmp) / name
            logs.mkdir()
            run(logs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
