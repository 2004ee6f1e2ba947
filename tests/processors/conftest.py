"""Each adapter against its local peer, as one `Harness` the conformance suite runs over.

The peers are started here (`stack.py`), once per test session, and killed at the end:
- Stripe: localstripe (PyPI), a stateful fake of Stripe's API, in this virtual environment.
- Adyen: Stoplight Prism (npm) serving Adyen's own OpenAPI document of the Checkout API
  (`adyen-openapi/`), which validates every request; it keeps no state, so Adyen is tested in
  `test_adyen.py` rather than by the stateful conformance suite.
- Lightning: LNbits (PyPI) with its FakeWallet funding source, in a virtual environment of its
  own, its exchange rate taken from a recorded exchange ticker on 127.0.0.1. A Lightning payment
  is a prepayment, not a hold, so it has its own suite (`test_lightning.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.processors import CardRef
from gateway.processors.port import Processor
from gateway.processors.stripe import StripeProcessor
from gateway.server import EmbeddedGateway
from tests.processors.peers import Inbox, RecordingProxy, free_port
from tests.processors.stack import (
    ADYEN_ACCOUNT,
    ADYEN_API_KEY,
    ADYEN_HMAC_KEY,
    STRIPE_APPROVE,
    STRIPE_DECLINE,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    Lnbits,
    Wallet,
    start_lnbits,
    start_localstripe,
    start_prism,
    stripe_payment_method,
)

__all__ = ["STRIPE_KEY", "STRIPE_WEBHOOK_SECRET", "Harness", "Lnbits", "Wallet"]


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
    secrets: tuple[str, ...]  # what must never be logged: keys, webhook secrets, card numbers


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    peer = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    yield peer.url
    peer.close()


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
        secrets=(STRIPE_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_APPROVE, STRIPE_DECLINE),
    )
    proxy.close()


@pytest.fixture(scope="session")
def prism_adyen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prism mocking Adyen's Checkout API v71 from Adyen's published document."""
    peer = start_prism(tmp_path_factory.mktemp("prism"))
    yield peer.url
    peer.close()


@pytest.fixture(scope="session")
def lnbits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lnbits]:
    server, close = start_lnbits(tmp_path_factory.mktemp("lnbits"))
    yield server
    close()


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


# -- the gateway configured for an adapter and its peer ---------------------------------------


def processors_file(tmp_path: Path, tables: str, routes: str) -> Path:
    path = tmp_path / "processors.toml"
    path.write_text('[[processors]]\nadapter = "simulated"\naccount = "kiosk"\n' + tables + routes)
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_STRIPE_KEY", STRIPE_KEY)
    monkeypatch.setenv("T_STRIPE_WHSEC", STRIPE_WEBHOOK_SECRET)
    monkeypatch.setenv("T_ADYEN_KEY", ADYEN_API_KEY)
    monkeypatch.setenv("T_ADYEN_HMAC", ADYEN_HMAC_KEY)


@pytest.fixture
def prism_proxy(prism_adyen: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(prism_adyen).start()
    yield proxy
    proxy.close()


@pytest.fixture
def adyen_gw(tmp_path: Path, env: None, prism_proxy: RecordingProxy) -> Iterator[EmbeddedGateway]:
    tables = f"""
[[processors]]
adapter = "adyen"
account = "{ADYEN_ACCOUNT}"
api_key_env = "T_ADYEN_KEY"
hmac_key_env = "T_ADYEN_HMAC"
checkout_url = "{prism_proxy.url}"
return_url = "https://pay.example.org/return"
"""
    routes = f'[[routes]]\nprocessor = "adyen"\naccount = "{ADYEN_ACCOUNT}"\nmethod = "web_card"\n'
    gw = EmbeddedGateway(
        tmp_path / "g.sqlite3", processors_file=processors_file(tmp_path, tables, routes)
    )
    gw.up()
    yield gw
    gw.close()


@pytest.fixture
def stripe_gw(tmp_path: Path, env: None, localstripe: str) -> Iterator[EmbeddedGateway]:
    tables = f"""
[[processors]]
adapter = "stripe"
account = "acct_web"
api_key_env = "T_STRIPE_KEY"
webhook_secret_env = "T_STRIPE_WHSEC"
api_base = "{localstripe}"
"""
    routes = '[[routes]]\nprocessor = "stripe"\naccount = "acct_web"\nmethod = "web_card"\n'
    gw = EmbeddedGateway(
        tmp_path / "g.sqlite3", processors_file=processors_file(tmp_path, tables, routes)
    )
    gw.up()
    yield gw
    gw.close()
