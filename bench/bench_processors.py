"""Processor adapters against their local peers: hold, capture and refund latency added over
the peer's own answer time, median and p99, every adapter in one run, at two levels.

Each adapter talks to its peer (localstripe; Prism over Adyen's OpenAPI document, behind the
test suite's `AdyenBooks` where the gateway needs Adyen's state; LNbits with FakeWallet)
through a recording proxy that times every exchange from the first byte forwarded to the
whole answer read. Added time = the call's wall time - the sum of its exchanges' peer time.
- **adapter**: the adapter's own call (its SDK: request building, JSON, error mapping) and one
  loopback hop through the proxy per request.
- **gateway**: the whole money step as the gateway serves it, on SQLite: the hold through the
  payment page's entry point (`Payments.hold_web`), the capture through the terminal API and
  the refund through the operator's route, both over HTTP to a running gateway — the
  idempotency key claim, the step's claim, the processor call, the record with its movement
  and stored answer, each committed (fsynced) — plus the adapter's share above. Adyen's
  capture and refund are answered when Adyen has `received` them (its notification, which
  settles them, is delivered after and not timed); a Lightning refund is paid to the
  driver's invoice, given to the operator's route as its destination, and the change (the
  part of the Lightning payment not captured) is claimed on the driver's session page with
  an invoice for it (`POST /pay/sessions/{id}/change`, up to its redirect).
  The simulated processor has no peer: its row is the gateway's whole cost with an in-process
  processor whose books are in the same database.
Calls that make several requests (Stripe's refund checks the capture first; Lightning looks up,
quotes and creates) count every request's peer time as the peer's.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_change import sats_for
from gateway.processors.lightning_rates import LnbitsRates
from gateway.processors.methods import LIGHTNING, WEB_CARD
from gateway.processors.stripe import StripeProcessor
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.processors.adyen_books import AdyenBooks
from tests.processors.peers import RecordingProxy
from tests.processors.stack import (
    ADYEN_ACCOUNT,
    ADYEN_API_KEY,
    ADYEN_HMAC_KEY,
    STRIPE_APPROVE,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    start_lnbits,
    start_localstripe,
    start_prism,
    stripe_payment_method,
)

ROUNDS = {"simulated": 100, "stripe": 100, "adyen": 100, "lightning": 40}
TERMINAL = "KIOSK-BENCH"
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

    def time(
        self,
        proxy: RecordingProxy | None,
        op: str,
        call: Callable[[], Any],
        ok: Callable[[Any], bool] | None = None,
    ) -> Any:
        before = len(proxy.exchanges) if proxy else 0
        started = time.perf_counter()
        result = call()
        wall = time.perf_counter() - started
        peer = sum(ex.peer_seconds for ex in proxy.exchanges[before:]) if proxy else 0.0
        self.added.setdefault(op, []).append(wall - peer)
        self.peer.setdefault(op, []).append(peer)
        good = ok(result) if ok else result.succeeded or result.outcome.value == "pending"
        if not good:
            raise SystemExit(f"{op} failed: {result} {getattr(result, 'text', '')}")
        return result

    def report(self, adapter: str, level: str) -> None:
        for op, added in self.added.items():
            peer = self.peer[op]
            print(
                f"{adapter:9s} {level:7s} {op:8s} n={len(added):3d}"
                f"  added median {_ms(_median(added))}  p99 {_ms(_p99(added))}"
                f"   peer median {_ms(_median(peer))}  p99 {_ms(_p99(peer))}"
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
        t.report("stripe", "adapter")
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
        t.report("adyen", "adapter")
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
        t.report("lightning", "adapter")
    finally:
        proxy.close()
        close()


# -- through the gateway ----------------------------------------------------------------------


def _gateway(tmp: Path, name: str, tables: str, method: str) -> EmbeddedGateway:
    config = tmp / f"{name}.toml"
    config.write_text(
        '[[processors]]\nadapter = "simulated"\naccount = "kiosk"\n'
        + tables
        + f'[[routes]]\nprocessor = "{name}"\naccount = "acct-{name}"\nmethod = "{method}"\n'
    )
    gw = EmbeddedGateway(tmp / f"{name}.sqlite3", processors_file=config)
    gw.up()
    return gw


def _capture(gw: EmbeddedGateway, aid: str, minor: int) -> requests.Response:
    return requests.post(
        f"{gw.url}/v1/authorizations/{aid}/capture",
        json=capture(minor) | {"receipt": capture(minor)["receipt"] | {"receipt_id": _receipt()}},
        headers={"Idempotency-Key": f"{aid}:capture"},
        timeout=30,
    )


def _receipt() -> str:
    return "R" + uuid.uuid4().hex[:16].upper()  # the contract's ^[A-Z0-9]{6,32}$


def _refund(
    gw: EmbeddedGateway, aid: str, minor: int, destination: str | None = None
) -> requests.Response:
    body: dict[str, Any] = {"amount": {"minor": minor, "currency": "EUR"}, "reason": "bench"}
    if destination is not None:
        body["destination"] = destination
    return requests.post(
        f"{gw.url}/operator/authorizations/{aid}/refunds",
        json=body,
        headers={
            "Idempotency-Key": f"{aid}:refund",
            "Authorization": f"Bearer {gw.operator_token}",
        },
        timeout=30,
    )


def _approved(answer: Any) -> bool:
    return bool(answer.answer.body.get("status") in ("approved", "pending"))


def _answered(*codes: int) -> Callable[[Any], bool]:
    return lambda response: response.status_code in codes


def _hold_web(
    t: Timings, gw: EmbeddedGateway, proxy: RecordingProxy | None, aid: str, card: CardRef
) -> Any:
    return t.time(
        proxy,
        "hold",
        lambda: gw.payments.hold_web(
            authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
        ),
        _approved,
    )


def bench_gateway_simulated(tmp: Path) -> None:
    gw = _gateway(
        tmp,
        "simulated",
        '[[processors]]\nadapter = "simulated"\naccount = "acct-simulated"\n',
        "web_card",
    )
    try:
        t = Timings()
        for i in range(ROUNDS["simulated"]):
            aid = f"bench-simulated-{i}"
            card = CardRef(
                kind=WEB_CARD, token=f"t{i}", brand="visa", last4="4242", expiry=None, payload={}
            )
            _hold_web(t, gw, None, aid, card)
            t.time(None, "capture", lambda aid=aid: _capture(gw, aid, 3000), _answered(200))
            t.time(None, "refund", lambda aid=aid: _refund(gw, aid, 1000), _answered(200))
        t.report("simulated", "gateway")
    finally:
        gw.close()


def bench_gateway_stripe(tmp: Path) -> None:
    peer = start_localstripe(tmp)
    proxy = RecordingProxy(peer.url).start()
    os.environ["BENCH_STRIPE_KEY"] = STRIPE_KEY
    os.environ["BENCH_STRIPE_WHSEC"] = STRIPE_WEBHOOK_SECRET
    tables = f"""[[processors]]
adapter = "stripe"
account = "acct-stripe"
api_key_env = "BENCH_STRIPE_KEY"
webhook_secret_env = "BENCH_STRIPE_WHSEC"
api_base = "{proxy.url}"
"""
    gw = _gateway(tmp, "stripe", tables, "web_card")
    try:
        t = Timings()
        for i in range(ROUNDS["stripe"]):
            aid = f"bench-stripe-{i}"
            card = stripe_payment_method(peer.url, STRIPE_APPROVE)
            _hold_web(t, gw, proxy, aid, card)
            t.time(proxy, "capture", lambda aid=aid: _capture(gw, aid, 3000), _answered(200))
            t.time(proxy, "refund", lambda aid=aid: _refund(gw, aid, 1000), _answered(200))
        t.report("stripe", "gateway")
    finally:
        gw.close()
        proxy.close()
        peer.close()


def bench_gateway_adyen(tmp: Path) -> None:
    peer = start_prism(tmp)
    books = AdyenBooks(peer.url, ADYEN_HMAC_KEY, ADYEN_ACCOUNT).start()
    proxy = RecordingProxy(books.url).start()
    os.environ["BENCH_ADYEN_KEY"] = ADYEN_API_KEY
    os.environ["BENCH_ADYEN_HMAC"] = ADYEN_HMAC_KEY
    tables = f"""[[processors]]
adapter = "adyen"
account = "{ADYEN_ACCOUNT}"
api_key_env = "BENCH_ADYEN_KEY"
hmac_key_env = "BENCH_ADYEN_HMAC"
checkout_url = "{proxy.url}"
return_url = "https://pay.example.org/return"
"""
    config = tmp / "adyen.toml"
    config.write_text(
        '[[processors]]\nadapter = "simulated"\naccount = "kiosk"\n'
        + tables
        + f'[[routes]]\nprocessor = "adyen"\naccount = "{ADYEN_ACCOUNT}"\nmethod = "web_card"\n'
    )
    gw = EmbeddedGateway(tmp / "adyen.sqlite3", processors_file=config)
    gw.up()
    card = CardRef(
        kind=WEB_CARD, token="", brand="visa", last4="1111", expiry="3003", payload=ENCRYPTED_CARD
    )

    def notify(psp: str) -> None:
        # Adyen's notification of the modification just answered `received` (not timed).
        body = books.notifications(psp)[-1]
        answer = requests.post(
            f"{gw.url}/webhooks/adyen/{ADYEN_ACCOUNT}",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        if answer.text != "[accepted]":
            raise SystemExit(f"notification not accepted: {answer.status_code} {answer.text}")

    try:
        t = Timings()
        for i in range(ROUNDS["adyen"]):
            aid = f"bench-adyen-{i}"
            _hold_web(t, gw, proxy, aid, card)
            psp = next(r for r in gw.ledger.all_authorizations() if r["id"] == aid)["processor_ref"]
            t.time(proxy, "capture", lambda aid=aid: _capture(gw, aid, 3000), _answered(504))
            notify(psp)
            t.time(proxy, "refund", lambda aid=aid: _refund(gw, aid, 1000), _answered(504))
            notify(psp)
        t.report("adyen", "gateway")
    finally:
        gw.close()
        proxy.close()
        books.close()
        peer.close()


def bench_gateway_lightning(tmp: Path) -> None:
    server, close = start_lnbits(tmp)
    proxy = RecordingProxy(server.url).start()
    operator = server.wallet("gw-operator", sats=10_000_000)
    driver = server.wallet("gw-driver", sats=10_000_000)
    (tmp / "invoice.key").write_text(operator.invoice_key + "\n")
    (tmp / "admin.key").write_text(operator.admin_key + "\n")
    tables = f"""[[processors]]
adapter = "lightning"
account = "acct-lightning"
url = "{proxy.url}"
invoice_key_file = "{tmp / "invoice.key"}"
admin_key_file = "{tmp / "admin.key"}"
"""
    gw = _gateway(tmp, "lightning", tables, "lightning")
    wallet = CardRef(kind=LIGHTNING, token="", brand="", last4="", expiry=None, payload={})
    try:
        t = Timings()
        for i in range(ROUNDS["lightning"]):
            aid = f"bench-lightning-{i}"
            asked = {"authorization_id": aid, "terminal_id": TERMINAL, "card": wallet}
            pending = _hold_web(t, gw, proxy, aid, wallet)
            server.pay(driver, str(pending.pay["bolt11"]))
            paid = gw.payments.hold_web(**asked, amount=Money(5000, "EUR"))
            if paid.answer.body["status"] != "approved":
                raise SystemExit(f"lightning hold not approved once paid: {paid.answer.body}")
            t.time(proxy, "capture", lambda aid=aid: _capture(gw, aid, 3000), _answered(200))
            # The driver's invoice for 10.00 EUR at the payment's rate, the refund's destination.
            price = Decimal(str(pending.pay["btc_price"]))
            bolt11 = server.invoice(driver, sats_for(Money(1000, "EUR"), price))
            t.time(
                proxy,
                "refund",
                lambda aid=aid, bolt11=bolt11: _refund(gw, aid, 1000, destination=bolt11),
                _answered(200),
            )
            # The change (20.00 EUR not captured), claimed with the driver's invoice on the
            # session page: the form's post up to its redirect.
            adapter = gw.processors.get("lightning", "acct-lightning")
            assert isinstance(adapter, LightningProcessor)
            row = gw.ledger.fetch(aid)
            sats = adapter.change_sats(reference=row.processor_ref, owed=Money(2000, "EUR"))
            change = server.invoice(driver, sats)
            t.time(
                proxy,
                "change",
                lambda aid=aid, change=change: requests.post(
                    f"{gw.url}/pay/sessions/{aid}/change",
                    data={"invoice": change},
                    allow_redirects=False,
                    timeout=30,
                ),
                _answered(303),
            )
        t.report("lightning", "gateway")
    finally:
        gw.close()
        proxy.close()
        close()


def main() -> int:
    print("processor adapters: time added over the peer's own answer (see module docstring)")
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("stripe", bench_stripe),
            ("adyen", bench_adyen),
            ("lightning", bench_lightning),
            ("gw-simulated", bench_gateway_simulated),
            ("gw-stripe", bench_gateway_stripe),
            ("gw-adyen", bench_gateway_adyen),
            ("gw-lightning", bench_gateway_lightning),
        ):
            logs = Path(tmp) / name
            logs.mkdir()
            run(logs)
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
