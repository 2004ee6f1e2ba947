"""Starting the processors' local peers, for the test fixtures and the bench alike.

Each `start_*` returns a `Running` peer: its URL, and `close` to kill it (SIGKILL) and stop what
was started for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import stripe

from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD
from tests.ports import free_port
from tests.processors import install
from tests.processors.peers import start_process, stop
from tests.processors.recorded import RecordedPeer

HERE = Path(__file__).resolve().parent
ADYEN_SPEC = HERE / "adyen-openapi" / "CheckoutService-v71.json"
ADYEN_API_KEY = "AQE_conformance_api_key"
ADYEN_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ADYEN_ACCOUNT = "EvChargingECOM"
STRIPE_KEY = "sk_test_conformance"
STRIPE_WEBHOOK_SECRET = "whsec_conformance"
# Stripe's documented test cards (https://docs.stripe.com/testing): 4242… approves;
# 4000 0000 0000 0341 attaches to a customer but every charge on it is declined.
STRIPE_APPROVE = "4242424242424242"
STRIPE_DECLINE = "4000000000000341"


@dataclass(frozen=True)
class Running:
    url: str
    close: Callable[[], None]


def start_localstripe(logs: Path) -> Running:
    """localstripe (PyPI), a stateful fake of Stripe's API, from this virtual environment."""
    port = free_port()
    proc = start_process(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        port=port,
        log=logs / "localstripe.log",
    )
    return Running(f"http://127.0.0.1:{port}", lambda: stop(proc))


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
        kind=WEB_CARD, token=method.id, brand="visa", last4=number[-4:], expiry="3412", payload={}
    )


def start_prism(logs: Path) -> Running:
    """Stoplight Prism (npm) mocking Adyen's Checkout API v71 from Adyen's own document."""
    exe = install.prism()
    port = free_port()
    proc = start_process(
        [str(exe), "mock", "--host", "127.0.0.1", "--port", str(port), str(ADYEN_SPEC)],
        port=port,
        log=logs / "prism.log",
        timeout_s=120,
    )
    return Running(f"http://127.0.0.1:{port}", lambda: stop(proc))


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


def start_lnbits(data: Path) -> tuple[Lnbits, Callable[[], None]]:
    """LNbits (PyPI, its own venv) with its FakeWallet funding source, priced by one exchange
    rate provider: a recorded Kraken ticker served on 127.0.0.1 (BTC at 57012.30 EUR)."""
    exe = install.lnbits()
    ticker = RecordedPeer({("GET", "/0/public/Ticker"): (200, "kraken/ticker_xbteur.json")})
    ticker.start()
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
    try:
        proc = start_process(
            [str(exe), "--host", "127.0.0.1", "--port", str(port)],
            port=port,
            log=data / "lnbits.log",
            env=env,
            cwd=install.lnbits_site(exe),
            timeout_s=120,
        )
    except RuntimeError:
        ticker.close()
        raise
    url = f"http://127.0.0.1:{port}"

    def close() -> None:
        stop(proc)
        ticker.close()

    # LNbits's first-install step makes the super user, whose token funds test wallets.
    first = requests.put(
        f"{url}/api/v1/auth/first_install",
        json={
            "username": "operator",
            "password": "conformance-1",
            "password_repeat": "conformance-1",
        },
        timeout=30,
    )
    if not first.ok:
        close()
        first.raise_for_status()
    return Lnbits(url=url, token=first.json()["access_token"]), close
