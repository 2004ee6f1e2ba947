"""Adyen, through the official `Adyen` SDK: Checkout API v71 pre-authorisation and modifications.

Which path it serves: the web payment by phone. The phone's page encrypts the card fields in
the browser with the account's client-side encryption (CSE) public key (`cse_public_key`,
"10001|<modulus hex>" as Adyen's Customer Area shows it for the API credential) using Adyen's
CSE library, so the gateway only ever sees ``adyenjs_…`` ciphertexts that Adyen alone can
open; the gateway gets them as a `CardRef` of kind ``web_card`` whose ``payload`` is a
``paymentMethod`` object (``type: scheme`` and the ``encrypted…`` fields, the same object
Adyen's Card component makes), or of kind ``web_wallet`` whose ``payload`` is the Apple Pay or
Google Pay component's ``paymentMethod`` (``type: applepay`` / ``googlepay`` and its token).
Card data in clear (the kiosk's reader) is refused with `ErrorCode.UNSUPPORTED`: it goes to an
acquirer or the simulated processor.

How the port maps onto Adyen (https://docs.adyen.com/online-payments/adjust-authorisation):
- `hold`: ``POST /payments`` with ``additionalData.authorisationType = PreAuth`` and the
  gateway's payment id as ``reference``; ``resultCode: Authorised`` is held.
- `increment`: ``POST /payments/{pspReference}/amountUpdates`` (the new total).
- `capture`, `release`, `refund`: ``/captures``, ``/cancels``, ``/refunds``.
Adyen answers every modification with ``status: received`` and reports its outcome later in
a notification (AUTHORISATION_ADJUSTMENT, CAPTURE, CANCELLATION, REFUND), so those calls give
`Outcome.PENDING` and the notification settles them.
- `status`: Adyen publishes no endpoint that reports a payment's state; the state of an Adyen
  payment is what its notifications said. `status` therefore raises `ProcessorUnreachable`
  (unknown for now), and a lost hold answer is recovered by sending the same hold again with
  the same idempotency key, which Adyen answers with the first result.
- `parse_webhook`: the notification's HMAC signature is checked with the SDK's
  `Adyen.util.is_valid_hmac_notification` before any field is used.
Every money call sends the gateway's key as Adyen's ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import Adyen
import requests

from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD, WEB_WALLET
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaymentStatus,
    ProcessorError,
    ProcessorUnreachable,
    Result,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money

log = logging.getLogger("ev_gateway.processors.adyen")

# A client-side encryption public key as Adyen gives it: the RSA exponent and modulus in hex,
# "10001|A1B2…" (https://docs.adyen.com/development-resources/client-side-encryption).
CSE_KEY = re.compile(r"^[0-9A-Fa-f]{1,8}\|[0-9A-Fa-f]{256,1024}$")

# The CardRef kinds Adyen takes, each with the `paymentMethod.type` values its payload may
# carry (https://docs.adyen.com/payment-methods: "scheme" for cards, "applepay", "googlepay"
# and the older "paywithgoogle" for the wallets).
PAYMENT_METHOD_TYPES: dict[str, frozenset[str]] = {
    WEB_CARD: frozenset({"scheme"}),
    WEB_WALLET: frozenset({"applepay", "googlepay", "paywithgoogle"}),
}
# The Checkout API version whose published OpenAPI document the adapter is tested against.
CHECKOUT_VERSION = "v71"

# Adyen refusal reason codes (https://docs.adyen.com/development-resources/refusal-reasons).
REFUSALS: dict[str, ErrorCode] = {
    "2": ErrorCode.CARD_DECLINED,  # Refused
    "3": ErrorCode.CARD_DECLINED,  # Referral
    "4": ErrorCode.PROCESSOR_UNAVAILABLE,  # Acquirer Error
    "5": ErrorCode.CARD_DECLINED,  # Blocked Card
    "6": ErrorCode.EXPIRED_CARD,  # Expired Card
    "7": ErrorCode.AMOUNT_INVALID,  # Invalid Amount
    "8": ErrorCode.INVALID_CARD,  # Invalid Card Number
    "9": ErrorCode.CARD_DECLINED,  # Issuer Unavailable
    "10": ErrorCode.CARD_DECLINED,  # Not supported
    "11": ErrorCode.AUTHENTICATION_REQUIRED,  # 3D Not Authenticated
    "12": ErrorCode.INSUFFICIENT_FUNDS,  # Not enough balance
    "14": ErrorCode.FRAUD_SUSPECTED,  # Acquirer Fraud
    "15": ErrorCode.CARD_DECLINED,  # Cancelled
    "20": ErrorCode.FRAUD_SUSPECTED,  # FRAUD
    "22": ErrorCode.FRAUD_SUSPECTED,  # FRAUD-CANCELLED
    "24": ErrorCode.INVALID_CARD,  # CVC Declined
    "27": ErrorCode.CARD_DECLINED,  # Declined Non Generic
    "28": ErrorCode.INSUFFICIENT_FUNDS,  # Withdrawal amount exceeded
    "29": ErrorCode.INSUFFICIENT_FUNDS,  # Withdrawal count exceeded
    "31": ErrorCode.FRAUD_SUSPECTED,  # Issuer Suspected Fraud
    "38": ErrorCode.AUTHENTICATION_REQUIRED,  # Authentication required
}

# Notification event codes (https://docs.adyen.com/development-resources/webhooks/webhook-types).
EVENT_KINDS: dict[str, WebhookKind] = {
    "AUTHORISATION": WebhookKind.HELD,
    "AUTHORISATION_ADJUSTMENT": WebhookKind.HELD,
    "CAPTURE": WebhookKind.CAPTURED,
    "CANCELLATION": WebhookKind.RELEASED,
    "REFUND": WebhookKind.REFUNDED,
}

# Refusal reasons as an AUTHORISATION notification's `reason` gives them when `success` is
# "false" (the text of https://docs.adyen.com/development-resources/refusal-reasons).
REFUSAL_TEXTS: dict[str, ErrorCode] = {
    "not enough balance": ErrorCode.INSUFFICIENT_FUNDS,
    "expired card": ErrorCode.EXPIRED_CARD,
    "invalid card number": ErrorCode.INVALID_CARD,
    "cvc declined": ErrorCode.INVALID_CARD,
    "fraud": ErrorCode.FRAUD_SUSPECTED,
    "acquirer fraud": ErrorCode.FRAUD_SUSPECTED,
    "issuer suspected fraud": ErrorCode.FRAUD_SUSPECTED,
    "3d not authenticated": ErrorCode.AUTHENTICATION_REQUIRED,
    "authentication required": ErrorCode.AUTHENTICATION_REQUIRED,
    "withdrawal amount exceeded": ErrorCode.INSUFFICIENT_FUNDS,
}


class AdyenProcessor:
    """Implements `gateway.processors.port.Processor` for one Adyen merchant account."""

    name = "adyen"

    def __init__(
        self,
        *,
        account: str,
        api_key: str,
        hmac_key: str,
        checkout_url: str,
        return_url: str,
        live: bool = False,
        timeout_s: int = 20,
        cse_public_key: str | None = None,
    ) -> None:
        if cse_public_key is not None and not CSE_KEY.fullmatch(cse_public_key):
            raise ValueError("cse_public_key must be Adyen's 'EXPONENT|MODULUS' in hex")
        self.account = account
        # The key the phone's page encrypts card fields with; None: no card form on the page.
        self.cse_public_key = cse_public_key
        self.capabilities = frozenset(
            {
                Capability.INCREMENT,
                Capability.PARTIAL_CAPTURE,
                Capability.REFUND,
                Capability.WEBHOOK,
                Capability.WEB,
                Capability.NOTIFIED,
            }
        )
        self._hmac_key = hmac_key
        self._return_url = return_url
        sdk = Adyen.Adyen(
            xapikey=api_key, platform="live" if live else "test", http_timeout=timeout_s
        )
        # The SDK's services take their base address as an attribute; `checkout_url` is the
        # account's Checkout endpoint including the version, e.g.
        # https://{prefix}-checkout-live.adyenpayments.com/checkout/v71.
        self._payments = sdk.checkout.payments_api
        self._modifications = sdk.checkout.modifications_api
        self._payments.baseUrl = checkout_url.rstrip("/")
        self._modifications.baseUrl = checkout_url.rstrip("/")

    def __repr__(self) -> str:
        return f"AdyenProcessor(account={self.account!r})"

    def hold(self, *, key: str, payment_id: str, card: Any, amount: Money) -> Result:
        if (
            not isinstance(card, CardRef)
            or card.clear is not None
            or card.payload.get("type") not in PAYMENT_METHOD_TYPES.get(card.kind, ())
        ):
            return _refused(
                amount,
                ErrorCode.UNSUPPORTED,
                "adyen takes the Card component's encrypted fields from the phone's payment "
                "page; card data from the kiosk's reader goes to an acquirer",
            )
        request = {
            "merchantAccount": self.account,
            "amount": _amount(amount),
            "reference": payment_id,
            "paymentMethod": dict(card.payload),
            "returnUrl": self._return_url,
            "shopperInteraction": "Ecommerce",
            "additionalData": {"authorisationType": "PreAuth"},
        }
        answer = self._call(amount, lambda: self._payments.payments(request, idempotency_key=key))
        if isinstance(answer, Result):
            return answer
        return _authorised(answer, amount)

    def increment(self, *, key: str, reference: str, amount: Money) -> Result:
        request = {
            "merchantAccount": self.account,
            "amount": _amount(amount),
            "reference": key,
            "industryUsage": "delayedCharge",
        }
        return self._modify(
            amount,
            lambda: self._modifications.update_authorised_amount(
                request, reference, idempotency_key=key
            ),
        )

    def capture(self, *, key: str, reference: str, amount: Money) -> Result:
        request = {"merchantAccount": self.account, "amount": _amount(amount), "reference": key}
        return self._modify(
            amount,
            lambda: self._modifications.capture_authorised_payment(
                request, reference, idempotency_key=key
            ),
        )

    def release(self, *, key: str, reference: str, amount: Money) -> Result:
        request = {"merchantAccount": self.account, "reference": key}
        return self._modify(
            Money.zero(amount.currency),
            lambda: self._modifications.cancel_authorised_payment_by_psp_reference(
                request, reference, idempotency_key=key
            ),
        )

    def refund(
        self, *, key: str, reference: str, amount: Money, destination: str | None = None
    ) -> Result:
        if destination is not None:
            return _refused(amount, ErrorCode.INVALID_REQUEST, "adyen refunds go to the card")
        if amount.minor <= 0:
            return _refused(amount, ErrorCode.AMOUNT_INVALID, "a refund is of a positive amount")
        request = {"merchantAccount": self.account, "amount": _amount(amount), "reference": key}
        return self._modify(
            amount,
            lambda: self._modifications.refund_captured_payment(
                request, reference, idempotency_key=key
            ),
        )

    def status(self, *, payment_id: str, reference: str | None) -> PaymentStatus:
        raise ProcessorUnreachable(
            "adyen publishes no payment-status endpoint; its notifications carry the state"
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        try:
            document = json.loads(body)
            items = document["notificationItems"]
            if not isinstance(items, list) or len(items) != 1:
                raise WebhookRejected("adyen notification: exactly one item expected")
            item = items[0]["NotificationRequestItem"]
            signature = item["additionalData"]["hmacSignature"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise WebhookRejected(f"adyen notification not understood: {exc!r}") from None
        if not isinstance(signature, str) or not signature:
            raise WebhookRejected("adyen notification is not signed")
        try:
            valid = Adyen.util.is_valid_hmac_notification(item, self._hmac_key)
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(f"adyen notification not verifiable: {exc!r}") from None
        if not valid:
            raise WebhookRejected("adyen notification: HMAC signature does not match")
        try:
            code = str(item["eventCode"])
            success = str(item["success"]).lower() == "true"
            if code not in EVENT_KINDS:
                raise WebhookRejected(f"adyen notification: event {code} is not handled")
            kind = EVENT_KINDS[code]
            if code == "AUTHORISATION" and not success:
                kind = WebhookKind.DECLINED
            elif not success:
                # A modification that failed changes nothing; the gateway learns it was refused.
                kind = WebhookKind.DECLINED
            psp = str(item["pspReference"])
            original = item.get("originalReference")
            amount = item["amount"]
            error = None if success else _notified_refusal(code, str(item.get("reason", "")))
            return WebhookEvent(
                # Adyen's notifications carry no id of their own; Adyen documents the
                # pspReference with the eventCode (and success) as what identifies one.
                event_id=f"{psp}:{code}:{'true' if success else 'false'}",
                kind=kind,
                reference=str(original) if original else psp,
                payment_id=str(item["merchantReference"]) if code == "AUTHORISATION" else None,
                amount=Money(int(amount["value"]), str(amount["currency"])),
                raw=item,
                error=error,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(f"adyen notification not understood: {exc!r}") from None

    # -- plumbing --------------------------------------------------------------------------

    def _modify(self, asked: Money, request: Any) -> Result:
        answer = self._call(asked, request)
        if isinstance(answer, Result):
            return answer
        if answer.get("status") != "received":
            return _refused(
                asked, ErrorCode.INVALID_REQUEST, f"adyen answered {answer.get('status')!r}"
            )
        return Result(
            outcome=Outcome.PENDING,
            amount=asked,
            reference=str(answer.get("paymentPspReference", "")),
            raw=answer,
        )

    def _call(self, asked: Money, request: Any) -> dict[str, Any] | Result:
        """Run one SDK request: its answer, or every failure as a `Result` (the port's rule)."""
        try:
            answer = request()
        except requests.Timeout:
            return _no_answer(asked, "adyen did not answer in time")
        except requests.ConnectionError:
            log.warning("event=adyen_no_answer account=%s", self.account)
            return _no_answer(asked, "no connection to adyen")
        except Adyen.AdyenAPIAuthenticationError as exc:
            return _refused(asked, ErrorCode.CONFIGURATION, "adyen refused the API key", exc=exc)
        except Adyen.AdyenAPIInvalidPermission as exc:
            return _refused(asked, ErrorCode.CONFIGURATION, "adyen: no permission", exc=exc)
        except Adyen.AdyenAPICommunicationError as exc:
            if getattr(exc, "status_code", None) == 404:
                return _refused(asked, ErrorCode.NOT_FOUND, "adyen: no such payment", exc=exc)
            return Result(
                outcome=Outcome.UNKNOWN,
                amount=Money.zero(asked.currency),
                error=_error(ErrorCode.PROCESSOR_UNAVAILABLE, "adyen server error", exc),
            )
        except (Adyen.AdyenAPIValidationError, Adyen.AdyenAPIUnprocessableEntity) as exc:
            return _refused(asked, ErrorCode.INVALID_REQUEST, "adyen refused the request", exc=exc)
        except Adyen.AdyenError as exc:
            status = getattr(exc, "status_code", None)
            if status == 429:
                return _refused(asked, ErrorCode.RATE_LIMITED, "adyen: too many requests", exc=exc)
            return Result(
                outcome=Outcome.UNKNOWN,
                amount=Money.zero(asked.currency),
                error=_error(ErrorCode.PROCESSOR_UNAVAILABLE, "adyen server error", exc),
            )
        message = answer.message
        return dict(message) if isinstance(message, dict) else {}


def _amount(money: Money) -> dict[str, Any]:
    # Adyen's Amount: value in minor units, ISO 4217 currency
    # (https://docs.adyen.com/development-resources/currency-codes).
    return {"currency": money.currency, "value": money.minor}


def _authorised(answer: Mapping[str, Any], asked: Money) -> Result:
    code = answer.get("resultCode")
    psp = str(answer.get("pspReference", ""))
    zero = Money.zero(asked.currency)
    if code == "Authorised":
        held = answer.get("amount")
        minor = int(held["value"]) if isinstance(held, Mapping) else asked.minor
        outcome = Outcome.APPROVED if minor >= asked.minor else Outcome.PARTIALLY_APPROVED
        return Result(
            outcome=outcome, amount=Money(minor, asked.currency), reference=psp, raw=answer
        )
    if code in ("Pending", "Received"):
        return Result(outcome=Outcome.PENDING, amount=zero, reference=psp, raw=answer)
    if code in ("IdentifyShopper", "ChallengeShopper", "RedirectShopper"):
        error = ProcessorError(
            code=ErrorCode.AUTHENTICATION_REQUIRED,
            message="the card asks for 3-D Secure, which the payment page must run",
            processor_code=str(code),
        )
        return Result(outcome=Outcome.DECLINED, amount=zero, reference=psp, error=error, raw=answer)
    extra = answer.get("additionalData")
    extra = extra if isinstance(extra, Mapping) else {}
    reason_code = str(answer.get("refusalReasonCode", ""))
    normalised = REFUSALS.get(reason_code, ErrorCode.CARD_DECLINED)
    if code == "Error":
        normalised = ErrorCode.PROCESSOR_UNAVAILABLE
    error = ProcessorError(
        code=normalised,
        message=str(answer.get("refusalReason", code)),
        processor_code=reason_code or str(code),
        advice_code=extra.get("merchantAdviceCode"),
    )
    return Result(outcome=Outcome.DECLINED, amount=zero, reference=psp, error=error, raw=answer)


def _notified_refusal(event_code: str, reason: str) -> ProcessorError:
    """Why a notification with `success` "false" was refused. Adyen gives the reason as text
    only: a refused authorisation names its refusal reason; a refused capture or refund
    names the amount or balance when it asked for more than the payment has left, else the
    payment was no longer in a state to take it (cancelled, captured, expired). The text is
    not copied into the message: only the normalised code and the event code travel."""
    text = reason.strip().lower()
    if event_code == "AUTHORISATION":
        code = REFUSAL_TEXTS.get(text, ErrorCode.CARD_DECLINED)
    elif event_code == "AUTHORISATION_ADJUSTMENT":
        code = ErrorCode.CARD_DECLINED
    elif "balance" in text or "amount" in text:
        code = ErrorCode.AMOUNT_INVALID
    else:
        code = ErrorCode.ALREADY_SETTLED
    return ProcessorError(
        code=code, message=f"adyen refused the {event_code.lower()}", processor_code=event_code
    )


def _error(code: ErrorCode, message: str, exc: Exception | None) -> ProcessorError:
    processor_code = str(getattr(exc, "error_code", "") or getattr(exc, "status_code", "") or "")
    return ProcessorError(code=code, message=message, processor_code=processor_code)


def _refused(
    asked: Money, code: ErrorCode, message: str, *, exc: Exception | None = None
) -> Result:
    raw = getattr(exc, "raw_response", None)
    try:
        body = json.loads(raw) if isinstance(raw, str | bytes) and raw else {}
    except ValueError:
        body = {}
    return Result(
        outcome=Outcome.DECLINED,
        amount=Money.zero(asked.currency),
        error=_error(code, message, exc),
        raw=body if isinstance(body, dict) else {},
    )


def _no_answer(asked: Money, message: str) -> Result:
    return Result(
        outcome=Outcome.UNKNOWN,
        amount=Money.zero(asked.currency),
        error=ProcessorError(code=ErrorCode.TIMEOUT, message=message),
    )
