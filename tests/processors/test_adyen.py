"""Adyen against Stoplight Prism serving Adyen's own OpenAPI document of the Checkout API v71.

Prism validates every request the adapter sends against Adyen's description (a request that
does not match is answered 422 with an ``sl-violations`` header) and answers with the
document's own examples; a test picks the example with a ``Prefer`` header, as it would pick a
test card. Prism keeps no state, so what needs state or answers the document has no example
for (a refusal, a partial authorisation) is tested against recorded answers from Adyen's
documentation, and the HMAC-signed notifications against Adyen's documented signing scheme.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.methods import WEB_CARD
from gateway.processors.port import (
    ErrorCode,
    Outcome,
    ProcessorUnreachable,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money
from tests.processors.conftest import new_key, new_payment_id
from tests.processors.peers import RecordingProxy
from tests.processors.recorded import RecordedPeer
from tests.processors.stack import ADYEN_ACCOUNT, ADYEN_API_KEY, ADYEN_HMAC_KEY

API_KEY = ADYEN_API_KEY
HMAC_KEY = ADYEN_HMAC_KEY
ACCOUNT = ADYEN_ACCOUNT
PSP = "993617894903480A"

# What Adyen's Card component hands the page (test card 4111 1111 1111 1111, encrypted in the
# browser: https://docs.adyen.com/development-resources/testing/test-card-numbers).
ENCRYPTED_CARD = {
    "type": "scheme",
    "encryptedCardNumber": "test_4111111111111111",
    "encryptedExpiryMonth": "test_03",
    "encryptedExpiryYear": "test_2030",
    "encryptedSecurityCode": "test_737",
}


def _card() -> CardRef:
    return CardRef(
        kind=WEB_CARD, token="", brand="visa", last4="1111", expiry="3003", payload=ENCRYPTED_CARD
    )


def _adapter(url: str) -> AdyenProcessor:
    return AdyenProcessor(
        account=ACCOUNT,
        api_key=API_KEY,
        hmac_key=HMAC_KEY,
        checkout_url=url,
        return_url="https://pay.example.org/return",
        timeout_s=10,
    )


@pytest.fixture
def prism(prism_adyen: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(prism_adyen).start()
    yield proxy
    proxy.close()


def _valid(proxy: RecordingProxy) -> dict[str, Any]:
    """The one request sent, after checking Prism found it valid against Adyen's document."""
    assert len(proxy.exchanges) == 1
    exchange = proxy.exchanges[0]
    assert "sl-violations" not in {k.lower() for k in exchange.answer_headers}, (
        exchange.answer_headers
    )
    assert exchange.status in (200, 201), exchange.answer
    body: dict[str, Any] = json.loads(exchange.body)
    return body


def test_a_hold_is_a_valid_preauthorisation(prism: RecordingProxy) -> None:
    prism.prefer = "example=card-securedfields"
    key, payment_id = new_key(), new_payment_id()
    result = _adapter(prism.url).hold(
        key=key, payment_id=payment_id, card=_card(), amount=Money(5000, "EUR")
    )
    sent = _valid(prism)
    assert result.outcome is Outcome.APPROVED
    assert result.amount == Money(5000, "EUR")
    assert result.reference == "993617895215577D"
    assert prism.exchanges[0].path == "/payments"
    assert sent["additionalData"] == {"authorisationType": "PreAuth"}
    assert sent["amount"] == {"currency": "EUR", "value": 5000}
    assert sent["reference"] == payment_id
    assert sent["merchantAccount"] == ACCOUNT
    assert sent["paymentMethod"] == ENCRYPTED_CARD
    headers = {k.lower(): v for k, v in prism.exchanges[0].headers.items()}
    assert headers["idempotency-key"] == key
    assert headers["x-api-key"] == API_KEY


def test_a_request_adyen_would_refuse_is_caught_by_the_document(prism: RecordingProxy) -> None:
    # The document allows only credit, debit or prepaid as a card's fundingSource; the
    # validation this suite relies on is live.
    payload = {**ENCRYPTED_CARD, "fundingSource": "cheque"}
    card = CardRef(
        kind=WEB_CARD, token="", brand="visa", last4="1111", expiry=None, payload=payload
    )
    result = _adapter(prism.url).hold(
        key=new_key(), payment_id=new_payment_id(), card=card, amount=Money(5000, "EUR")
    )
    assert "sl-violations" in {k.lower() for k in prism.exchanges[0].answer_headers}
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None and result.error.code is ErrorCode.INVALID_REQUEST


def test_a_hold_that_needs_3ds_is_not_approved(prism: RecordingProxy) -> None:
    prism.prefer = "example=card-3d-secure-2-web"
    result = _adapter(prism.url).hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    _valid(prism)
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None
    assert result.error.code is ErrorCode.AUTHENTICATION_REQUIRED


def test_an_increment_is_a_valid_amount_update(prism: RecordingProxy) -> None:
    key = new_key()
    result = _adapter(prism.url).increment(key=key, reference=PSP, amount=Money(7500, "EUR"))
    sent = _valid(prism)
    assert prism.exchanges[0].path == f"/payments/{PSP}/amountUpdates"
    assert sent["amount"] == {"currency": "EUR", "value": 7500}
    assert sent["industryUsage"] == "delayedCharge"
    assert result.outcome is Outcome.PENDING  # Adyen confirms by AUTHORISATION_ADJUSTMENT
    assert result.reference == PSP
    assert result.amount == Money(7500, "EUR")
    assert {k.lower(): v for k, v in prism.exchanges[0].headers.items()}["idempotency-key"] == key


def test_a_partial_capture_is_a_valid_capture(prism: RecordingProxy) -> None:
    result = _adapter(prism.url).capture(key=new_key(), reference=PSP, amount=Money(1234, "EUR"))
    sent = _valid(prism)
    assert prism.exchanges[0].path == f"/payments/{PSP}/captures"
    assert sent["amount"] == {"currency": "EUR", "value": 1234}
    assert result.outcome is Outcome.PENDING
    assert result.amount == Money(1234, "EUR")


def test_a_release_is_a_valid_cancel(prism: RecordingProxy) -> None:
    result = _adapter(prism.url).release(key=new_key(), reference=PSP, amount=Money(5000, "EUR"))
    sent = _valid(prism)
    assert prism.exchanges[0].path == f"/payments/{PSP}/cancels"
    assert sent["merchantAccount"] == ACCOUNT
    assert result.outcome is Outcome.PENDING


def test_a_partial_refund_is_a_valid_refund(prism: RecordingProxy) -> None:
    key = new_key()
    result = _adapter(prism.url).refund(key=key, reference=PSP, amount=Money(500, "EUR"))
    sent = _valid(prism)
    assert prism.exchanges[0].path == f"/payments/{PSP}/refunds"
    assert sent["amount"] == {"currency": "EUR", "value": 500}
    assert sent["reference"] == key
    assert result.outcome is Outcome.PENDING


def test_card_data_in_clear_is_never_sent(prism: RecordingProxy) -> None:
    from gateway.processors import ClearCard

    card = CardRef(
        kind="payment",
        token="t",
        brand="visa",
        last4="1111",
        expiry="3003",
        payload={},
        clear=ClearCard(
            pan="4111111111111111", expiry="3003", pan_sequence=None, track2=None, emv=()
        ),
    )
    result = _adapter(prism.url).hold(
        key=new_key(), payment_id=new_payment_id(), card=card, amount=Money(5000, "EUR")
    )
    assert result.error is not None and result.error.code is ErrorCode.UNSUPPORTED
    assert prism.exchanges == []


def test_an_unreachable_adyen_gives_unknown(unreachable_port: int) -> None:
    result = _adapter(f"http://127.0.0.1:{unreachable_port}").hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    assert result.outcome is Outcome.UNKNOWN
    assert result.error is not None and result.error.retryable


def test_status_is_unknown_since_adyen_has_no_status_endpoint() -> None:
    with pytest.raises(ProcessorUnreachable, match="no payment-status endpoint"):
        _adapter("http://127.0.0.1:9").status(payment_id="auth-1", reference=PSP)


# -- recorded answers from Adyen's documentation ----------------------------------------------


@pytest.fixture
def recorded() -> Iterator[RecordedPeer]:
    peer = RecordedPeer({}).start()
    yield peer
    peer.close()


def test_a_refusal_says_why_with_the_network_advice(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", "/payments")] = (200, "adyen/payment_refused.json")
    result = _adapter(recorded.url).hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None
    assert result.error.code is ErrorCode.INSUFFICIENT_FUNDS
    assert result.error.processor_code == "12"
    assert result.error.advice_code == "02"
    assert not result.error.retryable


def test_a_partial_authorisation_is_partially_approved(recorded: RecordedPeer) -> None:
    recorded.routes[("POST", "/payments")] = (200, "adyen/payment_partially_authorised.json")
    result = _adapter(recorded.url).hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    assert result.outcome is Outcome.PARTIALLY_APPROVED
    assert result.amount == Money(2500, "EUR")


# -- notifications ----------------------------------------------------------------------------


def _notification(
    *, code: str = "AUTHORISATION", success: str = "true", key: str = HMAC_KEY, **item: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "amount": {"currency": "EUR", "value": 5000},
        "eventCode": code,
        "eventDate": "2026-11-30T04:00:00+01:00",
        "merchantAccountCode": ACCOUNT,
        "merchantReference": "auth-42",
        "pspReference": PSP,
        "reason": "065696:1111:03/2030",
        "success": success,
        **item,
    }
    # Adyen's HMAC scheme for standard notifications
    # (https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures): the values
    # of pspReference, originalReference, merchantAccountCode, merchantReference, value,
    # currency, eventCode and success joined by ':', HMAC-SHA256 under the hex-decoded key,
    # Base64.
    signed = ":".join(
        str(v)
        for v in (
            fields["pspReference"],
            fields.get("originalReference", ""),
            fields["merchantAccountCode"],
            fields["merchantReference"],
            fields["amount"]["value"],
            fields["amount"]["currency"],
            fields["eventCode"],
            fields["success"],
        )
    )
    mac = hmac.new(binascii.unhexlify(key), signed.encode(), hashlib.sha256).digest()
    fields["additionalData"] = {"hmacSignature": base64.b64encode(mac).decode()}
    return {"live": "false", "notificationItems": [{"NotificationRequestItem": fields}]}


def _parse(document: dict[str, Any]) -> Any:
    return _adapter("http://127.0.0.1:9").parse_webhook(
        headers={"Content-Type": "application/json"}, body=json.dumps(document).encode()
    )


def test_a_signed_authorisation_maps_to_the_payment() -> None:
    event = _parse(_notification())
    assert event.kind is WebhookKind.HELD
    assert event.reference == PSP
    assert event.payment_id == "auth-42"
    assert event.amount == Money(5000, "EUR")
    assert event.event_id == f"{PSP}:AUTHORISATION:true"


def test_a_capture_notification_points_at_the_original_payment() -> None:
    event = _parse(
        _notification(code="CAPTURE", pspReference="CAPTUREPSP000001", originalReference=PSP)
    )
    assert event.kind is WebhookKind.CAPTURED
    assert event.reference == PSP
    assert event.payment_id is None


def test_a_refused_authorisation_is_a_decline() -> None:
    assert _parse(_notification(success="false")).kind is WebhookKind.DECLINED


def test_a_notification_changed_after_signing_is_rejected() -> None:
    document = _notification()
    document["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = 9000
    with pytest.raises(WebhookRejected, match="does not match"):
        _parse(document)


def test_a_notification_signed_with_another_key_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="does not match"):
        _parse(_notification(key="00" * 32))


def test_an_unsigned_notification_is_rejected() -> None:
    document = _notification()
    del document["notificationItems"][0]["NotificationRequestItem"]["additionalData"]
    with pytest.raises(WebhookRejected):
        _parse(document)
    with pytest.raises(WebhookRejected):
        _adapter("http://127.0.0.1:9").parse_webhook(headers={}, body=b"not json")


def test_no_key_reaches_a_log(
    prism: RecordingProxy, caplog: pytest.LogCaptureFixture, unreachable_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    prism.prefer = "example=card-securedfields"
    adapter = _adapter(prism.url)
    adapter.hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    _adapter(f"http://127.0.0.1:{unreachable_port}").hold(
        key=new_key(), payment_id=new_payment_id(), card=_card(), amount=Money(5000, "EUR")
    )
    assert caplog.records, "urllib3 and the adapter log at DEBUG: this test must see them"
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    assert API_KEY not in logged
    assert HMAC_KEY not in logged
    assert ENCRYPTED_CARD["encryptedCardNumber"] not in logged
