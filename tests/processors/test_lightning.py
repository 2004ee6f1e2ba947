"""Lightning against LNbits with its FakeWallet funding source (PyPI, its own venv).

The driver is a second LNbits wallet that pays the gateway's invoice; LNbits's rate comes from a
recorded exchange ticker (BTC at 57012.30 EUR). A Lightning payment is a prepayment, so this
suite checks what the adapter promises for it: an invoice fixed in fiat at a recorded rate, paid
status by polling and by a webhook confirmed with LNbits, capture of part of it, and refunds
paid out to the driver's invoice and recorded, never above what was paid.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

import pytest
import requests

from gateway.processors import CardRef
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_rates import LnbitsRates
from gateway.processors.methods import LIGHTNING
from gateway.processors.port import (
    ErrorCode,
    Outcome,
    PaymentState,
    ProcessorUnreachable,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money
from tests.processors.conftest import Lnbits, Wallet, new_key, new_payment_id
from tests.processors.peers import Inbox

BTC_EUR = Decimal("57012.30")  # tests/processors/recorded/kraken/ticker_xbteur.json, c[0]
WALLET = CardRef(kind=LIGHTNING, token="", brand="lightning", last4="", expiry=None, payload={})


def _sats(minor: int) -> int:
    return int((Decimal(minor) / 100 * 100_000_000 / BTC_EUR).to_integral_value(ROUND_UP))


@pytest.fixture(scope="module")
def operator(lnbits: Lnbits) -> Wallet:
    return lnbits.wallet("operator", sats=1_000_000)


@pytest.fixture(scope="module")
def driver(lnbits: Lnbits) -> Wallet:
    return lnbits.wallet("driver", sats=1_000_000)


@pytest.fixture
def adapter(lnbits: Lnbits, operator: Wallet, inbox: Inbox) -> LightningProcessor:
    return LightningProcessor(
        account="op-wallet",
        url=lnbits.url,
        invoice_key=operator.invoice_key,
        admin_key=operator.admin_key,
        rates=LnbitsRates(lnbits.url),
        webhook_url=inbox.url,
    )


@pytest.fixture
def paid(adapter: LightningProcessor, lnbits: Lnbits, driver: Wallet) -> tuple[str, str]:
    payment_id = new_payment_id()
    invoice = adapter.hold(
        key=new_key(), payment_id=payment_id, card=WALLET, amount=Money(500, "EUR")
    )
    lnbits.pay(driver, str(invoice.raw["bolt11"]))
    return invoice.reference, payment_id


def test_an_invoice_is_fixed_in_fiat_at_a_recorded_rate(
    adapter: LightningProcessor, lnbits: Lnbits, operator: Wallet
) -> None:
    payment_id = new_payment_id()
    result = adapter.hold(
        key=new_key(), payment_id=payment_id, card=WALLET, amount=Money(500, "EUR")
    )
    assert result.outcome is Outcome.PENDING
    assert result.amount == Money(500, "EUR")
    assert result.raw["sats"] == _sats(500) == 8771
    assert Decimal(str(result.raw["btc_price"])) == BTC_EUR
    assert "/api/v1/rate/EUR" in str(result.raw["rate_source"])
    assert str(result.raw["bolt11"]).startswith("lnbc")

    stored = requests.get(
        f"{lnbits.url}/api/v1/payments/{result.reference}",
        headers={"X-Api-Key": operator.invoice_key},
        timeout=10,
    ).json()["details"]
    assert stored["amount"] == 8771 * 1000
    assert stored["extra"]["fiat_minor"] == 500
    assert stored["extra"]["fiat_currency"] == "EUR"
    assert stored["extra"]["payment_id"] == payment_id


def test_paid_status_by_polling(
    adapter: LightningProcessor, lnbits: Lnbits, driver: Wallet
) -> None:
    payment_id = new_payment_id()
    invoice = adapter.hold(
        key=new_key(), payment_id=payment_id, card=WALLET, amount=Money(1250, "EUR")
    )
    assert adapter.status(payment_id="", reference=invoice.reference).state is PaymentState.PENDING

    lnbits.pay(driver, str(invoice.raw["bolt11"]))

    now = adapter.status(payment_id="", reference=invoice.reference)
    assert now.state is PaymentState.HELD
    assert now.held == Money(1250, "EUR")
    by_id = adapter.status(payment_id=payment_id, reference=None)
    assert by_id.state is PaymentState.HELD and by_id.reference == invoice.reference


def test_paid_status_by_webhook_confirmed_with_lnbits(
    adapter: LightningProcessor, paid: tuple[str, str], inbox: Inbox
) -> None:
    reference, payment_id = paid
    headers, body = inbox.received.get(timeout=15)
    event = adapter.parse_webhook(headers=headers, body=body)
    assert event.kind is WebhookKind.PAID
    assert event.reference == reference
    assert event.payment_id == payment_id
    assert event.amount == Money(500, "EUR")
    assert event.event_id == f"{reference}:paid"


def test_a_webhook_claiming_an_unpaid_invoice_is_paid_is_rejected(
    adapter: LightningProcessor,
) -> None:
    unpaid = adapter.hold(
        key=new_key(), payment_id=new_payment_id(), card=WALLET, amount=Money(500, "EUR")
    )
    forged = f'{{"payment_hash": "{unpaid.reference}", "status": "success"}}'.encode()
    with pytest.raises(WebhookRejected, match="not paid"):
        adapter.parse_webhook(headers={}, body=forged)
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook(headers={}, body=b'{"payment_hash": "' + b"0" * 64 + b'"}')
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook(headers={}, body=b"not json")


def test_the_same_key_twice_gives_the_same_invoice(adapter: LightningProcessor) -> None:
    key, payment_id = new_key(), new_payment_id()
    first = adapter.hold(key=key, payment_id=payment_id, card=WALLET, amount=Money(500, "EUR"))
    again = adapter.hold(key=key, payment_id=payment_id, card=WALLET, amount=Money(500, "EUR"))
    assert again.reference == first.reference
    assert again.raw["bolt11"] == first.raw["bolt11"]
    other = adapter.hold(
        key=new_key(), payment_id=payment_id, card=WALLET, amount=Money(500, "EUR")
    )
    assert other.outcome is Outcome.DECLINED
    assert other.error is not None and other.error.code is ErrorCode.INVALID_REQUEST


def test_a_capture_keeps_part_of_a_paid_invoice_and_records_the_rest_as_owed(
    adapter: LightningProcessor, paid: tuple[str, str], lnbits: Lnbits, operator: Wallet
) -> None:
    reference, _ = paid
    above = adapter.capture(key=new_key(), reference=reference, amount=Money(501, "EUR"))
    assert above.outcome is Outcome.DECLINED
    key = new_key()
    result = adapter.capture(key=key, reference=reference, amount=Money(320, "EUR"))
    assert result.outcome is Outcome.APPROVED
    assert result.amount == Money(320, "EUR")
    assert result.raw["owed_back_minor"] == 180
    # Recorded at LNbits, on the invoice itself: status reports it, a retry answers it.
    stored = requests.get(
        f"{lnbits.url}/api/v1/payments/{reference}",
        headers={"X-Api-Key": operator.invoice_key},
        timeout=10,
    ).json()["details"]["extra"]
    assert (stored["capture_key"], stored["captured_minor"], stored["owed_back_minor"]) == (
        key,
        320,
        180,
    )
    assert adapter.status(payment_id="", reference=reference).captured == Money(320, "EUR")
    again = adapter.capture(key=key, reference=reference, amount=Money(320, "EUR"))
    assert (again.outcome, again.amount) == (Outcome.APPROVED, Money(320, "EUR"))
    other = adapter.capture(key=new_key(), reference=reference, amount=Money(100, "EUR"))
    assert other.error is not None and other.error.code is ErrorCode.ALREADY_SETTLED


def test_a_hold_asked_again_is_approved_once_paid(
    adapter: LightningProcessor, lnbits: Lnbits, driver: Wallet
) -> None:
    asked = {
        "key": new_key(),
        "payment_id": new_payment_id(),
        "card": WALLET,
        "amount": Money(700, "EUR"),
    }
    first = adapter.hold(**asked)
    assert first.outcome is Outcome.PENDING
    assert adapter.hold(**asked).outcome is Outcome.PENDING
    lnbits.pay(driver, str(first.raw["bolt11"]))
    paid = adapter.hold(**asked)
    assert (paid.outcome, paid.amount, paid.reference) == (
        Outcome.APPROVED,
        Money(700, "EUR"),
        first.reference,
    )


def test_an_unpaid_invoice_cannot_be_captured(adapter: LightningProcessor) -> None:
    unpaid = adapter.hold(
        key=new_key(), payment_id=new_payment_id(), card=WALLET, amount=Money(500, "EUR")
    )
    result = adapter.capture(key=new_key(), reference=unpaid.reference, amount=Money(100, "EUR"))
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None and result.error.code is ErrorCode.AMOUNT_INVALID


def test_payouts_sum_to_the_capture_and_one_more_is_refused(
    adapter: LightningProcessor, paid: tuple[str, str], lnbits: Lnbits, driver: Wallet
) -> None:
    reference, _ = paid
    before = adapter.pay_out(
        key=new_key(),
        reference=reference,
        amount=Money(100, "EUR"),
        invoice=lnbits.invoice(driver, _sats(100)),
    )
    assert before.error is not None and before.error.code is ErrorCode.AMOUNT_INVALID
    assert adapter.capture(key=new_key(), reference=reference, amount=Money(500, "EUR")).succeeded
    key = new_key()
    first = adapter.pay_out(
        key=key,
        reference=reference,
        amount=Money(200, "EUR"),
        invoice=lnbits.invoice(driver, _sats(200)),
    )
    assert first.outcome is Outcome.APPROVED, first
    assert first.amount == Money(200, "EUR")
    assert first.raw["sats"] == _sats(200)
    replay = adapter.pay_out(
        key=key,
        reference=reference,
        amount=Money(200, "EUR"),
        invoice=lnbits.invoice(driver, _sats(200)),
    )
    assert replay.raw["payout_hash"] == first.raw["payout_hash"]

    wrong = adapter.pay_out(
        key=new_key(),
        reference=reference,
        amount=Money(300, "EUR"),
        invoice=lnbits.invoice(driver, 1),
    )
    assert wrong.error is not None and wrong.error.code is ErrorCode.AMOUNT_INVALID
    rest = adapter.pay_out(
        key=new_key(),
        reference=reference,
        amount=Money(300, "EUR"),
        invoice=lnbits.invoice(driver, _sats(300)),
    )
    assert rest.outcome is Outcome.APPROVED, rest

    one_more = adapter.pay_out(
        key=new_key(),
        reference=reference,
        amount=Money(1, "EUR"),
        invoice=lnbits.invoice(driver, _sats(1)),
    )
    assert one_more.outcome is Outcome.DECLINED
    assert one_more.error is not None and one_more.error.code is ErrorCode.AMOUNT_INVALID
    now = adapter.status(payment_id="", reference=reference)
    assert now.refunded == Money(500, "EUR")


def test_a_currency_without_a_price_is_refused_and_retryable(adapter: LightningProcessor) -> None:
    result = adapter.hold(
        key=new_key(), payment_id=new_payment_id(), card=WALLET, amount=Money(500, "GBP")
    )
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None
    assert result.error.code is ErrorCode.PROCESSOR_UNAVAILABLE and result.error.retryable


def test_an_unreachable_lnbits_gives_unknown(
    operator: Wallet, lnbits: Lnbits, unreachable_port: int
) -> None:
    dead = LightningProcessor(
        account="op-wallet",
        url=f"http://127.0.0.1:{unreachable_port}",
        invoice_key=operator.invoice_key,
        admin_key=operator.admin_key,
        rates=LnbitsRates(lnbits.url),
        timeout_s=2,
    )
    result = dead.hold(
        key=new_key(), payment_id=new_payment_id(), card=WALLET, amount=Money(500, "EUR")
    )
    assert result.outcome is Outcome.UNKNOWN
    with pytest.raises(ProcessorUnreachable):
        dead.status(payment_id="x", reference="0" * 64)


def test_increments_and_blind_refunds_are_unsupported(adapter: LightningProcessor) -> None:
    ref = "0" * 64
    inc = adapter.increment(key=new_key(), reference=ref, amount=Money(900, "EUR"))
    assert inc.error is not None and inc.error.code is ErrorCode.UNSUPPORTED
    ref_ = adapter.refund(key=new_key(), reference=ref, amount=Money(100, "EUR"))
    assert ref_.error is not None and ref_.error.code is ErrorCode.UNSUPPORTED
