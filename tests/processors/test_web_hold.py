"""Web payments (pay by phone) held through the gateway's entry point, `Payments.hold_web`, with
routing by the payment method's name (`gateway/processors/methods.py`), against the peers:
the ledger records which method, processor and account hold each payment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.app import create_payments
from gateway.ledger import Ledger, migrate, open_engine
from gateway.ledger.schema import authorizations
from gateway.payments import Payments
from gateway.payments.answers import Refusal
from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_rates import LnbitsRates
from gateway.processors.methods import (
    ID_TOKEN,
    LIGHTNING,
    METHODS,
    PAYMENT,
    WEB_CARD,
    WEB_METHODS,
    WEB_WALLET,
)
from gateway.processors.port import ErrorCode, Outcome, PaymentState
from gateway.processors.registry import Processors, Route
from gateway.processors.simulated import SimulatedProcessor
from gateway.processors.stripe import StripeProcessor
from terminal.money import Money
from tests.processors.conftest import STRIPE_KEY, STRIPE_WEBHOOK_SECRET, Lnbits, Wallet
from tests.processors.peers import RecordingProxy
from tests.processors.stack import STRIPE_APPROVE, STRIPE_DECLINE, stripe_payment_method
from tests.processors.test_adyen import ENCRYPTED_CARD

TERMINAL = "kiosk-7"
GOOGLE_PAY = {"type": "googlepay", "googlePayToken": '{"signature":"MEUCIQ..."}'}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    migrate(engine)
    yield Ledger(engine)
    engine.dispose()


@pytest.fixture
def stripe_adapter(localstripe: str) -> StripeProcessor:
    return StripeProcessor(
        account="acct_web",
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=localstripe,
        timeout_s=10,
    )


@pytest.fixture
def lightning_adapter(lnbits: Lnbits) -> LightningProcessor:
    operator = lnbits.wallet("web-operator")
    return LightningProcessor(
        account="web-wallet",
        url=lnbits.url,
        invoice_key=operator.invoice_key,
        admin_key=operator.admin_key,
        rates=LnbitsRates(lnbits.url),
    )


def _payments(ledger: Ledger, *adapters: Any, routes: tuple[Route, ...] = ()) -> Payments:
    return create_payments(ledger, Processors(adapters, routes))


def _row(ledger: Ledger, aid: str) -> Any:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(authorizations).where(authorizations.c.id == aid)).one()


def _count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(authorizations)).scalar())


def test_one_vocabulary_names_every_payment_method() -> None:
    assert {PAYMENT, ID_TOKEN} | WEB_METHODS == METHODS
    assert {WEB_CARD, WEB_WALLET, LIGHTNING} == WEB_METHODS
    assert Route(processor="stripe", account="a", method=WEB_WALLET).method == WEB_WALLET
    with pytest.raises(ValueError, match="'web'"):
        Route(processor="stripe", account="a", method="web")


def test_a_web_card_is_held_by_the_processor_its_method_routes_to(
    ledger: Ledger, localstripe: str, stripe_adapter: StripeProcessor
) -> None:
    simulated = SimulatedProcessor(ledger.engine, "kiosk-acquirer")
    payments = _payments(
        ledger,
        simulated,
        stripe_adapter,
        routes=(Route(processor="stripe", account="acct_web", method=WEB_CARD),),
    )
    card = stripe_payment_method(localstripe, STRIPE_APPROVE)
    held = payments.hold_web(
        authorization_id="web-1", terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    assert held.answer.body["amount_authorized"] == {"minor": 5000, "currency": "EUR"}
    row = _row(ledger, "web-1")
    assert (row.card_kind, row.processor, row.merchant_account) == (WEB_CARD, "stripe", "acct_web")
    assert row.terminal_id == TERMINAL and row.processor_ref.startswith("pi_")
    at_stripe = stripe_adapter.status(payment_id="web-1", reference=row.processor_ref)
    assert at_stripe.state is PaymentState.HELD and at_stripe.held == Money(5000, "EUR")
    assert simulated.calls == 0
    # Asked again (the page reloaded): the same answer, nothing placed twice.
    again = payments.hold_web(
        authorization_id="web-1", terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert again.answer.body == held.answer.body
    assert _row(ledger, "web-1").processor_ref == row.processor_ref


def test_a_declined_web_card_is_recorded_declined(
    ledger: Ledger, localstripe: str, stripe_adapter: StripeProcessor
) -> None:
    payments = _payments(ledger, stripe_adapter)
    card = stripe_payment_method(localstripe, STRIPE_DECLINE)
    held = payments.hold_web(
        authorization_id="web-2", terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "declined"
    assert _row(ledger, "web-2").status == "declined"


def test_a_kiosk_card_kind_is_not_a_web_payment(
    ledger: Ledger, stripe_adapter: StripeProcessor
) -> None:
    payments = _payments(ledger, stripe_adapter)
    for kind in (PAYMENT, ID_TOKEN, "web"):
        card = CardRef(kind=kind, token="pm_x", brand="", last4="", expiry=None, payload={})
        with pytest.raises(Refusal) as refused:
            payments.hold_web(
                authorization_id="web-3", terminal_id=TERMINAL, card=card, amount=Money(1, "EUR")
            )
        assert (refused.value.status, refused.value.code) == (400, "invalid_method")
    assert _count(ledger) == 0


def test_a_lightning_payment_is_pending_with_its_invoice_until_paid(
    ledger: Ledger, lnbits: Lnbits, lightning_adapter: LightningProcessor
) -> None:
    driver: Wallet = lnbits.wallet("web-driver", sats=1_000_000)
    payments = _payments(ledger, lightning_adapter)
    wallet = CardRef(kind=LIGHTNING, token="", brand="lightning", last4="", expiry=None, payload={})
    asked = {"authorization_id": "web-4", "terminal_id": TERMINAL, "card": wallet}
    first = payments.hold_web(**asked, amount=Money(2000, "EUR"))
    assert first.answer.body == {"authorization_id": "web-4", "status": "pending"}
    bolt11 = first.pay["bolt11"]
    assert bolt11.startswith("lnbc") and first.pay["rate_source"]
    # The page asks again before the driver paid: the same invoice, still pending.
    second = payments.hold_web(**asked, amount=Money(2000, "EUR"))
    assert second.answer.body["status"] == "pending" and second.pay["bolt11"] == bolt11
    lnbits.pay(driver, bolt11)
    paid = payments.hold_web(**asked, amount=Money(2000, "EUR"))
    assert paid.answer.body["status"] == "approved"
    assert paid.answer.body["amount_authorized"] == {"minor": 2000, "currency": "EUR"}
    row = _row(ledger, "web-4")
    assert (row.card_kind, row.processor, row.op) == (LIGHTNING, "lightning", None)


def test_adyen_takes_a_wallet_payment_and_refuses_a_card_named_a_wallet(
    prism_adyen: str,
) -> None:
    proxy = RecordingProxy(prism_adyen).start()
    try:
        adapter = AdyenProcessor(
            account="EvChargingECOM",
            api_key="AQE_test",
            hmac_key="44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
            checkout_url=proxy.url,
            return_url="https://pay.example.org/return",
            timeout_s=10,
        )
        wallet = CardRef(
            kind=WEB_WALLET, token="", brand="googlepay", last4="", expiry=None, payload=GOOGLE_PAY
        )
        held = adapter.hold(key="k1", payment_id="web-5", card=wallet, amount=Money(5000, "EUR"))
        assert len(proxy.exchanges) == 1
        assert "sl-violations" not in {k.lower() for k in proxy.exchanges[0].answer_headers}
        assert held.outcome is not Outcome.UNKNOWN
        misnamed = CardRef(
            kind=WEB_WALLET, token="", brand="visa", last4="", expiry=None, payload=ENCRYPTED_CARD
        )
        refused = adapter.hold(
            key="k2", payment_id="web-6", card=misnamed, amount=Money(5000, "EUR")
        )
        assert refused.error is not None and refused.error.code is ErrorCode.UNSUPPORTED
        assert len(proxy.exchanges) == 1  # nothing sent
    finally:
        proxy.close()
