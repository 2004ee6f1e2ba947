"""Pay by phone through the processors' own peers: the gateway's routing file sends a web
method to Stripe (localstripe, with its own stripe.js), to Adyen (Prism over Adyen's OpenAPI
document, with `AdyenBooks` holding the account's client-side encryption key), or Lightning to
LNbits (FakeWallet);
the kiosk runs on the simulator (`launcher.simulate`) or in Chromium (`tests/pay/test_*_browser`).

The peers are the processor suite's (`tests/processors/conftest.py`), started once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from launcher.simulate import Simulation, run_script
from terminal.config import Config
from tests.gateway.conftest import db_url, gateway_template, postgres  # noqa: F401 - back-ends
from tests.pay.lightning_session import is_payout
from tests.processors.adyen_books import AdyenBooks, cse_key, cse_public_key
from tests.processors.conftest import (  # noqa: F401 - the shared peers
    LIGHTNING_ROUTE,
    lightning_table,
    lnbits,
    localstripe,
    prism_adyen,
)
from tests.processors.peers import RecordingProxy
from tests.processors.stack import (
    ADYEN_ACCOUNT,
    ADYEN_API_KEY,
    ADYEN_HMAC_KEY,
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    Lnbits,
    Wallet,
)

STRIPE_PUBLISHABLE = "pk_test_conformance"


@dataclass(frozen=True)
class Routing:
    """A gateway's processor file and, for Lightning, the driver's funded wallet."""

    file: Path
    pay: Callable[[str], object] | None = None  # the driver's wallet pays a BOLT 11 invoice


@pytest.fixture
def phone_config(config: Config) -> Config:
    return replace(config, payment=replace(config.payment, pay_by_phone=True))


def routing_file(tmp_path: Path, tables: str) -> Path:
    """The gateway's processors file: the simulated processor (account ``default``, the
    default route), then `tables`, a processor's table and its routes."""
    path = tmp_path / "processors.toml"
    path.write_text('[[processors]]\nadapter = "simulated"\naccount = "default"\n' + tables)
    return path


def lightning_routing(tmp_path: Path, peer: Lnbits, *, webhook_url: str = "") -> Routing:
    """Web cards on the simulated processor (the default route), Lightning to an operator's
    LNbits wallet; a driver's wallet with a million sats."""
    hook = f'webhook_url = "{webhook_url}"\n' if webhook_url else ""
    table = lightning_table(tmp_path, peer, "pay-operator", more=hook)
    driver: Wallet = peer.wallet("pay-driver", sats=1_000_000)
    return Routing(
        file=routing_file(tmp_path, table + LIGHTNING_ROUTE),
        pay=lambda bolt11: peer.pay(driver, bolt11),
    )


@pytest.fixture
def payout_proxy(lnbits: Lnbits) -> Iterator[RecordingProxy]:  # noqa: F811 - the shared peer
    """LNbits behind a proxy that keeps the gateway's payouts waiting until `release` is set."""
    running = RecordingProxy(lnbits.url, stall=is_payout).start()
    yield running
    running.close()


def stripe_routing(
    tmp_path: Path, api_base: str, *, publishable: bool = True, wallet: bool = False
) -> Routing:
    """Web cards (and with `wallet` phone wallets, the account's country given) to a Stripe
    account (localstripe), its stripe.js served by localstripe; nothing routed for Lightning
    (the simulated default takes none)."""
    (tmp_path / "stripe.key").write_text(STRIPE_KEY + "\n")
    (tmp_path / "stripe-whsec").write_text(STRIPE_WEBHOOK_SECRET + "\n")
    key = f'publishable_key = "{STRIPE_PUBLISHABLE}"\n' if publishable else ""
    key += 'country = "DE"\n' if wallet else ""
    wallets = 'processor = "stripe"\naccount = "acct_web"\nmethod = "web_wallet"\n'
    wallets = "\n[[routes]]\n" + wallets if wallet else ""
    tables = f"""
[[processors]]
adapter = "stripe"
account = "acct_web"
api_key_file = "{tmp_path / "stripe.key"}"
webhook_secret_file = "{tmp_path / "stripe-whsec"}"
api_base = "{api_base}"
js_url = "{api_base}/js.stripe.com/v3/"
{key}
[[routes]]
processor = "stripe"
account = "acct_web"
method = "web_card"
{wallets}"""
    return Routing(file=routing_file(tmp_path, tables))


@pytest.fixture
def adyen_books(prism_adyen: str) -> Iterator[AdyenBooks]:  # noqa: F811 - the shared peer
    """Adyen for one test: Prism validating every request, books holding the private half of
    the account's client-side encryption key."""
    books = AdyenBooks(prism_adyen, ADYEN_HMAC_KEY, ADYEN_ACCOUNT, cse_key=cse_key()).start()
    yield books
    books.close()


def adyen_key(books: AdyenBooks) -> str:
    """The account's CSE public key, as the gateway's table names it."""
    assert books.cse_key is not None
    return cse_public_key(books.cse_key)


def adyen_routing(tmp_path: Path, books: AdyenBooks, *, cse: bool = True) -> Routing:
    """Web cards to an Adyen account (Prism and its books), the card form encrypting with the
    account's CSE key; nothing routed for Lightning."""
    (tmp_path / "adyen.key").write_text(ADYEN_API_KEY + "\n")
    (tmp_path / "adyen-hmac.key").write_text(ADYEN_HMAC_KEY + "\n")
    key = f'cse_public_key = "{adyen_key(books)}"\n' if cse else ""
    tables = f"""
[[processors]]
adapter = "adyen"
account = "{ADYEN_ACCOUNT}"
api_key_file = "{tmp_path / "adyen.key"}"
hmac_key_file = "{tmp_path / "adyen-hmac.key"}"
checkout_url = "{books.url}"
return_url = "https://pay.example.org/return"
{key}
[[routes]]
processor = "adyen"
account = "{ADYEN_ACCOUNT}"
method = "web_card"
"""
    return Routing(file=routing_file(tmp_path, tables))


Run = Callable[[str, Routing], Simulation]


def phone_session(*ways: str) -> str:
    """The script of a session paid on the phone: each of `ways` in turn (`pay qr <way>`, the
    last one paid), then plugged in, charged for 30 minutes and stopped from the phone."""
    paid = "".join(f"pay qr {way}\n" for way in ways)
    return (
        "expect idle\n" + paid + "expect plug-in\nplug\nev charge\nexpect charging\n"
        "wait 30m\npay stop\nwait 10s\nexpect receipt\n"
    )


def qr(sim: Simulation) -> str:
    """The pay-by-phone link in the QR code the kiosk shows now."""
    frame = sim.hardware.display.current
    assert frame is not None and frame.qr is not None, frame
    return frame.qr


@pytest.fixture
def paying(phone_config: Config, tmp_path: Path) -> Iterator[Run]:
    """Run a script on a kiosk with pay by phone on, its gateway routed by `routing`."""
    sims: list[Simulation] = []

    def run(script: str, routing: Routing) -> Simulation:
        sim = run_script(
            phone_config,
            script,
            tmp_path / f"sim{len(sims)}",
            processors_file=routing.file,
            wallet=routing.pay,
        )
        sims.append(sim)
        return sim

    yield run
    for sim in sims:
        sim.close()
