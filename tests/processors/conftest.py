"""Each adapter against its local peer, as one `Harness` the conformance suite runs over.

The peers are started here, once per test session, and killed at the end:
- Stripe: localstripe (PyPI), a stateful fake of Stripe's API, in this virtual environment.
- Adyen: Stoplight Prism (npm) serving Adyen's own OpenAPI document of the Checkout API
  (`adyen-openapi/`), which validates every request; it keeps no state, so Adyen is tested in
  `test_adyen.py` rather than by the stateful conformance suite.
- Lightning: LNbits (PyPI) with its FakeWallet funding source, in a virtual environment of its
  own, its exchange rate taken from a recorded exchange ticker on 127.0.0.1. A Lightning payment
  is a prepayment, not a hold, so it has its own suite (`test_lightning.py`).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import stripe

from gateway.processors import CardRef
from gateway.processors.port import Processor
from gateway.processors.stripe import WEB, StripeProcessor
from tests.processors import install
from tests.processors.peers import Inbox, RecordingProxy, free_port, start_process, stop
from tests.processors.recorded import RecordedPeer

ROOT = Path(__file__).resolve().parent
ADYEN_SPEC = ROOT / "adyen-openapi" / "CheckoutService-v71.json"
STRIPE_KEY = "sk_test_conformance"
STRIPE_WEBHOOK_SECRET = "whsec_conformance"
# Stripe's documented test cards (https://docs.stripe.com/testing): 4242… approves;
# 4000 0000 0000 0341 attaches to a customer but every charge on it is declined.
STRIPE_APPROVE = "4242424242424242"
STRIPE_DECLINE = "4000000000000341"


@dataclass
class Harness:
    """An adapter wired to its peer through a recording proxy, and the peer's test cards."""

    name: str
    processor: Processor
    proxy: RecordingProxy
    idempotency_header: str  # where the processor takes the gateway's idempotency key
    currency: str
    approving: Callable[[], CardRef]
    declining: Callable[[], CardRef]
    unreachable: Processor  # the same adapter pointed at a port where nothing listens


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    proc = start_process(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        port=port,
        log=log,
    )
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def stripe_payment_method(api_base: str, number: str) -> CardRef:
    """What the phone's payment page hands the gateway: a PaymentMethod id made by Stripe."""
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": api_base})
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return CardRef(
        kind=WEB, token=method.id, brand="visa", last4=number[-4:], expiry="3412", payload={}
    )


@pytest.fixture
def stripe_harness(localstripe: str) -> Iterator[Harness]:
    proxy = RecordingProxy(localstripe).start()
    processor = StripeProcessor(
        account="acct_conformance",
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=proxy.url,
        timeout_s=10,
    )
    dead = StripeProcessor(
        account="acct_conformance",
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=f"http://127.0.0.1:{free_port()}",
        timeout_s=2,
    )
    yield Harness(
        name="stripe",
        processor=processor,
        proxy=proxy,
        idempotency_header="Idempotency-Key",
        currency="EUR",
        approving=lambda: stripe_payment_method(localstripe, STRIPE_APPROVE),
        declining=lambda: stripe_payment_method(localstripe, STRIPE_DECLINE),
        unreachable=dead,
    )
    proxy.close()


@pytest.fixture(scope="session")
def prism_adyen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prism mocking Adyen's Checkout API v71 from Adyen's published document."""
    exe = install.prism()
    port = free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    proc = start_process(
        [str(exe), "mock", "--host", "127.0.0.1", "--port", str(port), str(ADYEN_SPEC)],
        port=port,
        log=log,
        timeout_s=120,
    )
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@dataclass(frozen=True)
class Wallet:
    id: str
    admin_key: str
    invoice_key: str


@dataclass(frozen=True)
class Lnbits:
    url: str
    token: str  # the super user's access token (funds wallets)

    def wallet(self, name: str, *, sats: int = 0) -> Wallet:
        made = requests.post(f"{self.url}/api/v1/account", json={"name": name}, timeout=10)
        made.raise_for_status()
        data = made.json()
        wallet = Wallet(id=data["id"], admin_key=data["adminkey"], invoice_key=data["inkey"])
        if sats:
            funded = requests.put(
                f"{self.url}/users/api/v1/balance",
                json={"id": wallet.id, "amount": sats},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
            funded.raise_for_status()
        return wallet

    def pay(self, payer: Wallet, bolt11: str) -> dict[str, object]:
        """The driver's wallet pays an invoice (an internal payment: FakeWallet has no peers)."""
        paid = requests.post(
            f"{self.url}/api/v1/payments",
            json={"out": True, "bolt11": bolt11},
            headers={"X-Api-Key": payer.admin_key},
            timeout=10,
        )
        paid.raise_for_status()
        answer: dict[str, object] = paid.json()
        return answer

    def invoice(self, payee: Wallet, sats: int) -> str:
        made = requests.post(
            f"{self.url}/api/v1/payments",
            json={"out": False, "amount": sats, "memo": "refund"},
            headers={"X-Api-Key": payee.invoice_key},
            timeout=10,
        )
        made.raise_for_status()
        return str(made.json()["bolt11"])


@pytest.fixture(scope="session")
def lnbits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lnbits]:
    exe = install.lnbits()
    ticker = RecordedPeer({("GET", "/0/public/Ticker"): (200, "kraken/ticker_xbteur.json")})
    ticker.start()
    data = tmp_path_factory.mktemp("lnbits")
    port = free_port()
    provider = {
        "name": "Kraken (recorded)",
        "api_url": f"{ticker.url}/0/public/Ticker?pair=XBT{{TO}}",
        "path": "$.result.XXBTZ{TO}.c[0]",
    }
    env = {
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_DATA_FOLDER": str(data),
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": json.dumps([provider]),
        "LNBITS_CALLBACK_URL_RULES": json.dumps([r"http://127\.0\.0\.1:\d+"]),
        "LNBITS_CALLBACK_ALLOW_PRIVATE_IPS": "true",
        "LNBITS_RATE_LIMIT_NO": "100000",
    }
    proc = start_process(
        [str(exe), "--host", "127.0.0.1", "--port", str(port)],
        port=port,
        log=data / "lnbits.log",
        env=env,
        cwd=install.lnbits_site(exe),
        timeout_s=120,
    )
    url = f"http://127.0.0.1:{port}"
    first = requests.put(
        f"{url}/api/v1/auth/first_install",
        json={
            "username": "operator",
            "password": "conformance-1",
            "password_repeat": "conformance-1",
        },
        timeout=30,
    )
    first.raise_for_status()
    yield Lnbits(url=url, token=first.json()["access_token"])
    stop(proc)
    ticker.close()


ADAPTERS = ["stripe"]


@pytest.fixture(params=ADAPTERS)
def harness(request: pytest.FixtureRequest) -> Harness:
    value: Harness = request.getfixturevalue(f"{request.param}_harness")
    return value


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox().start()
    yield box
    box.close()


def new_key() -> str:
    return uuid.uuid4().hex


def new_payment_id() -> str:
    return "auth-" + uuid.uuid4().hex[:12]
