"""Stripe beyond the conformance suite: signed webhooks from localstripe, and recorded answers
from Stripe's documentation for what localstripe does not model (incremental authorization,
the Search API, error codes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
import requests

from gateway.processors.port import ErrorCode, Outcome, PaymentState, WebhookKind, WebhookRejected
from gateway.processors.stripe import StripeProcessor
from terminal.money import Money
from tests.processors.conftest import (
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    Harness,
    new_key,
    new_payment_id,
)
from tests.processors.peers import Inbox
from tests.processors.recorded import RecordedPeer

PI = "pi_3MtwBwLkdIwHu7ix28a3tqPa"


def _adapter(api_base: str, *, incremental: bool = True) -> StripeProcessor:
    return StripeProcessor(
        account="acct_recorded",
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=api_base,
        incremental=incremental,
        timeout_s=5,
    )


@pytest.fixture
def recorded() -> Iterator[RecordedPeer]:
    peer = RecordedPeer({}).start()
    yield peer
    peer.close()


def _sign(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    # Stripe's scheme v1 (https://docs.stripe.com/webhooks#verify-manually):
    # HMAC-SHA256 of "{timestamp}.{body}" under the endpoint secret.
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"Stripe-Signature": f"t={timestamp},v1={mac.hexdigest()}"}


# -- against localstripe ---------------------------------------------------------------------


def test_a_hold_asks_for_manual_capture_and_names_the_payment(stripe_harness: Harness) -> None:
    payment_id = new_payment_id()
    result = stripe_harness.processor.hold(
        key=new_key(),
        payment_id=payment_id,
        card=stripe_harness.approving(),
        amount=Money(2500, "EUR"),
    )
    assert result.outcome is Outcome.APPROVED
    created = [ex for ex in stripe_harness.proxy.exchanges if ex.path == "/v1/payment_intents"]
    form = parse_qs(created[-1].body.decode())
    assert form["capture_method"] == ["manual"]
    assert form["metadata[payment_id]"] == [payment_id]
    assert form["amount"] == ["2500"] and form["currency"] == ["eur"]
    assert result.raw["metadata"] == {"payment_id": payment_id}


def test_signed_webhooks_from_localstripe_map_to_the_payment(
    stripe_harness: Harness, localstripe: str, inbox: Inbox
) -> None:
    requests.post(
        f"{localstripe}/_config/webhooks/conformance",
        data={"url": inbox.url, "secret": STRIPE_WEBHOOK_SECRET},
        timeout=5,
    ).raise_for_status()
    payment_id = new_payment_id()
    hold = stripe_harness.processor.hold(
        key=new_key(),
        payment_id=payment_id,
        card=stripe_harness.approving(),
        amount=Money(5000, "EUR"),
    )
    stripe_harness.processor.capture(
        key=new_key(), reference=hold.reference, amount=Money(5000, "EUR")
    )

    deadline = time.monotonic() + 15
    events = []
    while time.monotonic() < deadline:
        headers, body = inbox.received.get(timeout=max(0.1, deadline - time.monotonic()))
        event = stripe_harness.processor.parse_webhook(headers=headers, body=body)
        events.append(event)
        if event.reference == hold.reference:
            break
    mine = [e for e in events if e.reference == hold.reference]
    assert mine, events
    assert mine[0].kind is WebhookKind.CAPTURED
    assert mine[0].payment_id == payment_id
    assert mine[0].amount == Money(5000, "EUR")
    assert mine[0].event_id.startswith("evt_")

    # The same delivery, once forged (one byte of the body changed), is refused.
    forged = body.replace(b'"amount": 5000', b'"amount": 9000')
    assert forged != body
    with pytest.raises(WebhookRejected):
        stripe_harness.processor.parse_webhook(headers=headers, body=forged)


def test_a_webhook_signed_with_another_secret_is_rejected(stripe_harness: Harness) -> None:
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
    with pytest.raises(WebhookRejected):
        stripe_harness.processor.parse_webhook(
            headers=_sign(body, "whsec_other", int(time.time())), body=body
        )


def test_a_replayed_old_webhook_is_rejected(stripe_harness: Harness) -> None:
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
    with pytest.raises(WebhookRejected):
        stripe_harness.processor.parse_webhook(
            headers=_sign(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 3600), body=body
        )


def test_an_unsigned_or_unknown_webhook_is_rejected(stripe_harness: Harness) -> None:
    body = json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {}}}).encode()
    with pytest.raises(WebhookRejected):
        stripe_harness.processor.parse_webhook(headers={}, body=body)
    with pytest.raises(WebhookRejected, match="not understood"):
        stripe_harness.processor.parse_webhook(
            headers=_sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())), body=body
        )


def test_a_refund_webhook_carries_the_refunded_total() -> None:
    processor = _adapter("http://127.0.0.1:9")
    body = json.dumps(
        {
            "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
            "type": "charge.refunded",
            "data": {
                "object": {
                    "id": "ch_3MtwBwLkdIwHu7ix2a0bLD5P",
                    "object": "charge",
                    "amount": 5000,
                    "amount_captured": 3000,
                    "amount_refunded": 1000,
                    "currency": "eur",
                    "metadata": {},
                    "payment_intent": PI,
                }
            },
        }
    ).encode()
    event = processor.parse_webhook(
        headers=_sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())), body=body
    )
    assert event.kind is WebhookKind.REFUNDED
    assert event.reference == PI
    assert event.amount == Money(1000, "EUR")


# -- against recorded answers ----------------------------------------------------------------


def test_an_approved_increment_raises_the_hold(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/increment_authorization")] = (
        200,
        "stripe/increment_approved.json",
    )
    key = new_key()
    result = _adapter(recorded.url).increment(key=key, reference=PI, amount=Money(7500, "EUR"))
    assert result.outcome is Outcome.APPROVED
    assert result.amount == Money(7500, "EUR")
    assert result.reference == PI
    assert parse_qs(recorded.sent[0].body.decode()) == {"amount": ["7500"]}
    assert recorded.sent[0].headers["Idempotency-Key"] == key


def test_a_declined_increment_keeps_the_network_advice(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/increment_authorization")] = (
        402,
        "stripe/increment_declined.json",
    )
    result = _adapter(recorded.url).increment(
        key=new_key(), reference=PI, amount=Money(7500, "EUR")
    )
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None
    assert result.error.code is ErrorCode.INSUFFICIENT_FUNDS
    assert result.error.processor_code == "insufficient_funds"
    assert result.error.advice_code == "02"
    assert not result.error.retryable
    assert result.reference == PI


def test_an_increment_the_card_cannot_take_is_unsupported(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/increment_authorization")] = (
        400,
        "stripe/increment_unavailable.json",
    )
    result = _adapter(recorded.url).increment(
        key=new_key(), reference=PI, amount=Money(7500, "EUR")
    )
    assert result.error is not None and result.error.code is ErrorCode.UNSUPPORTED


def test_an_account_without_increments_sends_nothing(recorded: RecordedPeer) -> None:
    processor = _adapter(recorded.url, incremental=False)
    result = processor.increment(key=new_key(), reference=PI, amount=Money(7500, "EUR"))
    assert result.error is not None and result.error.code is ErrorCode.UNSUPPORTED
    assert recorded.sent == []


def test_status_without_a_reference_searches_by_payment_id(recorded: RecordedPeer) -> None:
    recorded.routes[("GET", "/v1/payment_intents/search")] = (
        200,
        "stripe/search_by_payment_id.json",
    )
    now = _adapter(recorded.url).status(payment_id="auth-recorded", reference=None)
    assert now.state is PaymentState.HELD
    assert now.reference == PI
    assert now.held == Money(5000, "EUR")
    query = parse_qs(recorded.sent[0].query)
    assert query["query"] == ["metadata['payment_id']:'auth-recorded'"]


def test_status_of_a_payment_id_stripe_never_saw_is_not_found(recorded: RecordedPeer) -> None:
    recorded.routes[("GET", "/v1/payment_intents/search")] = (200, "stripe/search_empty.json")
    now = _adapter(recorded.url).status(payment_id="auth-lost", reference=None)
    assert now.state is PaymentState.NOT_FOUND


def test_a_capture_of_a_cancelled_intent_is_already_settled(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/capture")] = (
        400,
        "stripe/capture_unexpected_state.json",
    )
    result = _adapter(recorded.url).capture(key=new_key(), reference=PI, amount=Money(100, "EUR"))
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None and result.error.code is ErrorCode.ALREADY_SETTLED


def test_rate_limiting_is_a_retryable_refusal(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/capture")] = (
        429,
        "stripe/rate_limited.json",
    )
    result = _adapter(recorded.url).capture(key=new_key(), reference=PI, amount=Money(100, "EUR"))
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None
    assert result.error.code is ErrorCode.RATE_LIMITED and result.error.retryable


def test_a_server_error_leaves_the_outcome_unknown(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", f"/v1/payment_intents/{PI}/capture")] = (
        500,
        "stripe/rate_limited.json",
    )
    result = _adapter(recorded.url).capture(key=new_key(), reference=PI, amount=Money(100, "EUR"))
    assert result.outcome is Outcome.UNKNOWN
    assert result.error is not None and result.error.code is ErrorCode.PROCESSOR_UNAVAILABLE
    assert result.error.retryable


def test_the_adapter_repr_shows_no_secret() -> None:
    processor = _adapter("http://127.0.0.1:9")
    assert STRIPE_KEY not in repr(processor)
    assert STRIPE_WEBHOOK_SECRET not in repr(processor)
