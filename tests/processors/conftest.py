"""Each adapter against its local peer, as one `Harness` the conformance suite runs over.

The peers are started here (`stack.py`), once per test session, and killed at the end:
- simulated: the gateway's own simulated processor, its books in a SQLite file.
- Stripe: localstripe (PyPI), a stateful fake of Stripe's API, in this virtual environment.
- Adyen: Stoplight Prism (npm) serving Adyen's own OpenAPI document of the Checkout API
  (`adyen-openapi/`), which validates every request; it keeps no state, so `AdyenBooks`
  (`adyen_books.py`) in front of it keeps the books and sends the signed notifications Adyen
  documents.
- Lightning: LNbits (PyPI) with its FakeWallet funding source, in a virtual environment of its
  own, its exchange rate taken from a recorded exchange ticker on 127.0.0.1; a second wallet
  is the driver who pays the invoices.
How each harness bridges what its processor declares (`Capability`) is in `harnesses.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.ledger import migrate, open_engine
from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_rates import LnbitsRates
from gateway.processors.methods import LIGHTNING, PAYMENT, WEB_CARD
from gateway.processors.simulated import SimulatedProcessor
from gateway.processors.stripe import StripeProcessor
from gateway.server import EmbeddedGateway
from tests.processors.adyen_books import AdyenBooks
from tests.processors.harnesses import (
    AdyenHarness,
    Harness,
    LightningHarness,
    SimulatedHarness,
    StripeHarness,
)
from tests.processors.peers import Inbox, RecordingProxy
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

# The recorded Kraken ticker LNbits prices with (recorded/kraken/ticker_xbteur.json, c[0]).
BTC_EUR = Decimal("57012.30")
# Adyen's Card component's encrypted fields for test card 4111 1111 1111 1111
# (https://docs.adyen.com/development-resources/testing/test-card-numbers).
ADYEN_CARD = {
    "type": "scheme",
    "encryptedCardNumber": "test_4111111111111111",
    "encryptedExpiryMonth": "test_03",
    "encryptedExpiryYear": "test_2030",
    "encryptedSecurityCode": "test_737",
}
# The invoices of the Lightning harness expire this soon, so the "declining" payer's
# walk-away is over in seconds.
LIGHTNING_EXPIRY_S = 3


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    peer = start_localstripe(tmp_path_factory.mktemp("localstripe"))
    yield peer.url
    peer.close()


@pytest.fixture
def simulated_harness(tmp_path: Path) -> Iterator[Harness]:
    engine = open_engine(f"sqlite:///{tmp_path / 'simulated.sqlite3'}")
    migrate(engine)
    secret = b"conformance-webhook-secret"
    processor = SimulatedProcessor(engine, "acct_conformance", webhook_secret=secret)
    dead = SimulatedProcessor(engine, "acct_conformance", webhook_secret=secret)
    dead.fail = "unreachable"

    def card(last4: str) -> CardRef:
        return CardRef(
            kind=PAYMENT, token=f"tok-{last4}", brand="visa", last4=last4, expiry="3412", payload={}
        )

    yield SimulatedHarness(
        name="simulated",
        processor=processor,
        currency="EUR",
        approving=lambda: card("4242"),
        declining=lambda: card("0002"),
        unreachable=dead,
        secrets=(secret.decode(),),
        unknown_reference="sim_neverexisted000000",
        over_http=False,
        engine=engine,
    )
    engine.dispose()


@pytest.fixture
def stripe_harness(localstripe: str, unreachable_port: int) -> Iterator[Harness]:
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
        api_base=f"http://127.0.0.1:{unreachable_port}",
        timeout_s=2,
    )
    yield StripeHarness(
        name="stripe",
        processor=processor,
        currency="EUR",
        approving=lambda: stripe_payment_method(localstripe, STRIPE_APPROVE),
        declining=lambda: stripe_payment_method(localstripe, STRIPE_DECLINE),
        unreachable=dead,
        secrets=(STRIPE_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_APPROVE, STRIPE_DECLINE),
        unknown_reference="pi_3NeverExisted0000000000",
        proxy=proxy,
    )
    proxy.close()


def _adyen(url: str) -> AdyenProcessor:
    return AdyenProcessor(
        account=ADYEN_ACCOUNT,
        api_key=ADYEN_API_KEY,
        hmac_key=ADYEN_HMAC_KEY,
        checkout_url=url,
        return_url="https://pay.example.org/return",
        timeout_s=10,
    )


@pytest.fixture
def adyen_harness(prism_adyen: str, unreachable_port: int) -> Iterator[Harness]:
    books = AdyenBooks(prism_adyen, ADYEN_HMAC_KEY, ADYEN_ACCOUNT).start()

    def card(holder: str | None) -> CardRef:
        payload = dict(ADYEN_CARD) | ({"holderName": holder} if holder else {})
        return CardRef(
            kind=WEB_CARD, token="", brand="visa", last4="1111", expiry="3003", payload=payload
        )

    yield AdyenHarness(
        name="adyen",
        processor=_adyen(books.url),
        currency="EUR",
        approving=lambda: card(None),
        declining=lambda: card("NOT_ENOUGH_BALANCE"),
        unreachable=_adyen(f"http://127.0.0.1:{unreachable_port}"),
        secrets=(ADYEN_API_KEY, ADYEN_HMAC_KEY, ADYEN_CARD["encryptedCardNumber"]),
        unknown_reference="NEVEREXISTED0000",
        books=books,
    )
    books.close()


@pytest.fixture(scope="session")
def lightning_wallets(lnbits: Lnbits) -> tuple[Wallet, Wallet]:
    """The operator's wallet and the driver's (funded: the driver pays the invoices)."""
    return lnbits.wallet("operator", sats=1_000_000), lnbits.wallet("driver", sats=5_000_000)


@pytest.fixture
def lightning_harness(
    lnbits: Lnbits, lightning_wallets: tuple[Wallet, Wallet], unreachable_port: int
) -> Iterator[Harness]:
    operator, driver = lightning_wallets
    proxy = RecordingProxy(lnbits.url).start()

    def adapter(url: str, timeout_s: float) -> LightningProcessor:
        return LightningProcessor(
            account="op-wallet",
            url=url,
            invoice_key=operator.invoice_key,
            admin_key=operator.admin_key,
            rates=LnbitsRates(lnbits.url),
            expiry_s=LIGHTNING_EXPIRY_S,
            timeout_s=timeout_s,
        )

    def wallet(token: str) -> CardRef:
        return CardRef(
            kind=LIGHTNING, token=token, brand="lightning", last4="", expiry=None, payload={}
        )

    yield LightningHarness(
        name="lightning",
        processor=adapter(proxy.url, 10),
        currency="EUR",
        approving=lambda: wallet("pays"),
        declining=lambda: wallet("walks-away"),
        unreachable=adapter(f"http://127.0.0.1:{unreachable_port}", 2),
        secrets=(operator.admin_key, operator.invoice_key),
        unknown_reference="0" * 64,
        proxy=proxy,
        lnbits=lnbits,
        driver=driver,
        btc_price=BTC_EUR,
        expiry_s=LIGHTNING_EXPIRY_S,
        never_pays={"walks-away"},
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


ADAPTERS = ["simulated", "stripe", "adyen", "lightning"]


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


LIGHTNING_ROUTE = (
    '[[routes]]\nprocessor = "lightning"\naccount = "op-wallet"\nmethod = "lightning"\n'
)


def lightning_table(
    tmp_path: Path, peer: Lnbits, name: str, *, url: str = "", more: str = ""
) -> str:
    """The ``[[processors]]`` table of a new operator wallet `name` on `peer` (account
    ``op-wallet``), its keys in files under `tmp_path`, LNbits reached at `url` (the peer's
    own when empty); `more` adds the table's other settings, one ``key = value`` a line."""
    operator = peer.wallet(name)
    (tmp_path / "invoice.key").write_text(operator.invoice_key + "\n")
    (tmp_path / "admin.key").write_text(operator.admin_key + "\n")
    return f"""
[[processors]]
adapter = "lightning"
account = "op-wallet"
url = "{url or peer.url}"
invoice_key_file = "{tmp_path / "invoice.key"}"
admin_key_file = "{tmp_path / "admin.key"}"
{more}"""


def lightning_processors(
    tmp_path: Path, peer: Lnbits, name: str, *, url: str = "", timeout_s: float | None = None
) -> Path:
    """A gateway's processors file: the operator wallet `name` (`lightning_table`) takes the
    ``lightning`` method, with the adapter's `timeout_s` when given."""
    more = f"timeout_s = {timeout_s}\n" if timeout_s is not None else ""
    table = lightning_table(tmp_path, peer, name, url=url, more=more)
    return processors_file(tmp_path, table, LIGHTNING_ROUTE)


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
