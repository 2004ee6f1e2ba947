"""Stripe, through the official `stripe` SDK: PaymentIntents with manual capture.

Which path it serves: the web payment by phone. The driver's phone page collects the card with
Stripe's own elements and hands the gateway a PaymentMethod id (``pm_…``), which arrives here as
a `CardRef` of kind ``web_card`` (or ``web_wallet``, a PaymentMethod made from an Apple Pay or
Google Pay token) whose token is that id. Card data in clear (the kiosk's reader)
is refused with `ErrorCode.UNSUPPORTED`: it goes to an acquirer or the simulated processor.

How the port maps onto Stripe's API (https://docs.stripe.com/api/payment_intents):
- `hold`: create and confirm a PaymentIntent, ``capture_method=manual``, the gateway's
  payment id in ``metadata[payment_id]``; ``requires_capture`` means held.
- `increment`: ``POST /v1/payment_intents/{id}/increment_authorization`` (only where the
  account has incremental authorization; the hold then asks for it with
  ``payment_method_options[card][request_incremental_authorization]=if_available``).
- `capture`: ``/capture`` with ``amount_to_capture`` (partial; Stripe releases the rest).
- `release`: ``/cancel``.
- `refund`: ``POST /v1/refunds`` with ``payment_intent`` and ``amount``; the adapter first
  checks the amount against what was captured and refunded, so every peer refuses an
  over-refund the same way Stripe does.
- `status`: retrieve the PaymentIntent (its latest charge expanded), or, without a reference,
  the Search API on ``metadata['payment_id']`` (Stripe's search may lag writes by a minute).
- `parse_webhook`: `stripe.WebhookSignature.verify_header` (HMAC-SHA256 over
  ``"{t}.{body}"``, five minutes' tolerance) before the body is parsed.
Every money call sends the gateway's key as Stripe's ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import stripe

from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD, WEB_WALLET
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaymentState,
    PaymentStatus,
    ProcessorError,
    ProcessorUnreachable,
    Result,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money

log = logging.getLogger("ev_gateway.processors.stripe")

# The CardRef kinds Stripe takes: PaymentMethods made on the phone's payment page.
KINDS = frozenset({WEB_CARD, WEB_WALLET})

# Stripe decline codes (https://docs.stripe.com/declines/codes) onto the normalised taxonomy.
DECLINE_CODES: dict[str, ErrorCode] = {
    "insufficient_funds": ErrorCode.INSUFFICIENT_FUNDS,
    "card_velocity_exceeded": ErrorCode.INSUFFICIENT_FUNDS,
    "withdrawal_count_limit_exceeded": ErrorCode.INSUFFICIENT_FUNDS,
    "expired_card": ErrorCode.EXPIRED_CARD,
    "incorrect_number": ErrorCode.INVALID_CARD,
    "invalid_number": ErrorCode.INVALID_CARD,
    "invalid_expiry_month": ErrorCode.INVALID_CARD,
    "invalid_expiry_year": ErrorCode.INVALID_CARD,
    "incorrect_cvc": ErrorCode.INVALID_CARD,
    "invalid_cvc": ErrorCode.INVALID_CARD,
    "invalid_account": ErrorCode.INVALID_CARD,
    "fraudulent": ErrorCode.FRAUD_SUSPECTED,
    "lost_card": ErrorCode.FRAUD_SUSPECTED,
    "stolen_card": ErrorCode.FRAUD_SUSPECTED,
    "pickup_card": ErrorCode.FRAUD_SUSPECTED,
    "merchant_blacklist": ErrorCode.FRAUD_SUSPECTED,
    "authentication_required": ErrorCode.AUTHENTICATION_REQUIRED,
    "invalid_amount": ErrorCode.AMOUNT_INVALID,
}

# Stripe error codes (https://docs.stripe.com/error-codes) of requests it refused.
REQUEST_CODES: dict[str, ErrorCode] = {
    "resource_missing": ErrorCode.NOT_FOUND,
    "payment_intent_unexpected_state": ErrorCode.ALREADY_SETTLED,
    "charge_already_captured": ErrorCode.ALREADY_SETTLED,
    "charge_already_refunded": ErrorCode.ALREADY_SETTLED,
    "charge_expired_for_capture": ErrorCode.ALREADY_SETTLED,
    "amount_too_large": ErrorCode.AMOUNT_INVALID,
    "amount_too_small": ErrorCode.AMOUNT_INVALID,
    "invalid_charge_amount": ErrorCode.AMOUNT_INVALID,
    "payment_intent_authentication_failure": ErrorCode.AUTHENTICATION_REQUIRED,
    "payment_intent_incremental_authorization_failed": ErrorCode.CARD_DECLINED,
    "incremental_authorization_unavailable": ErrorCode.UNSUPPORTED,
}

# Where browsers load Stripe's own script (https://docs.stripe.com/js); a test points it at
# localstripe's copy.
STRIPE_JS = "https://js.stripe.com/v3/"

# Webhook event types (https://docs.stripe.com/api/events/types) the gateway acts on.
EVENT_KINDS: dict[str, WebhookKind] = {
    "payment_intent.amount_capturable_updated": WebhookKind.HELD,
    "payment_intent.succeeded": WebhookKind.CAPTURED,
    "payment_intent.canceled": WebhookKind.RELEASED,
    "payment_intent.payment_failed": WebhookKind.DECLINED,
    "charge.refunded": WebhookKind.REFUNDED,
}

# Stripe's default signature tolerance (stripe.Webhook.DEFAULT_TOLERANCE), against replays.
WEBHOOK_TOLERANCE_S = 300


class StripeProcessor:
    """Implements `gateway.processors.port.Processor` for one Stripe account."""

    name = "stripe"

    def __init__(
        self,
        *,
        account: str,
        api_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        incremental: bool = False,
        timeout_s: float = 20.0,
        max_network_retries: int = 0,
        publishable_key: str | None = None,
        js_url: str = STRIPE_JS,
        country: str | None = None,
    ) -> None:
        if country is not None and not (len(country) == 2 and country.isalpha()):
            raise ValueError("country must be the account's ISO 3166-1 alpha-2 code")
        self.account = account
        # What the phone's payment page needs to load Stripe's card element (not secrets):
        # the account's publishable key and where stripe.js is served from.
        self.publishable_key = publishable_key
        self.js_url = js_url
        # The account's country, which Stripe's payment request (Apple Pay, Google Pay) must
        # name (https://docs.stripe.com/js/payment_request/create); None: no wallet button.
        self.country = country.upper() if country else None
        caps = {
            Capability.PARTIAL_CAPTURE,
            Capability.REFUND,
            Capability.WEBHOOK,
            Capability.WEB,
            Capability.STATUS,
        }
        if incremental:
            caps.add(Capability.INCREMENT)
        self.capabilities = frozenset(caps)
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.RequestsClient(timeout=timeout_s),
            max_network_retries=max_network_retries,
        )

    def __repr__(self) -> str:
        return f"StripeProcessor(account={self.account!r})"

    # -- the phone's card form --------------------------------------------------------------

    def card_setup(self, *, payment_id: str, key: str) -> str:
        """A SetupIntent for the phone's card element to confirm (stripe.js
        `confirmCardSetup`, which also runs 3-D Secure where the card asks for it): its client
        secret. The PaymentMethod it leaves (`pm_…`) is what `hold` is given. Raises
        `ProcessorUnreachable` when Stripe cannot be reached or refuses."""
        params: dict[str, Any] = {"payment_method_types": ["card"], "usage": "on_session"}
        try:
            intent = self._client.v1.setup_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            log.warning("event=stripe_setup_failed account=%s error=%s", self.account, type(exc))
            raise ProcessorUnreachable(
                f"stripe setup for {payment_id}: {type(exc).__name__}"
            ) from None
        secret = intent.client_secret
        if not secret:
            raise ProcessorUnreachable("stripe answered a SetupIntent without a client secret")
        return str(secret)

    # -- money calls -----------------------------------------------------------------------

    def hold(self, *, key: str, payment_id: str, card: Any, amount: Money) -> Result:
        if (
            not isinstance(card, CardRef)
            or card.kind not in KINDS
            or not card.token.startswith("pm_")
        ):
            return _refused(
                amount,
                ErrorCode.UNSUPPORTED,
                "stripe takes a PaymentMethod from the phone's payment page; card data from "
                "the kiosk's reader goes to an acquirer",
            )
        params: dict[str, Any] = {
            "amount": amount.minor,
            "currency": amount.currency.lower(),
            "payment_method": card.token,
            "payment_method_types": ["card"],
            "capture_method": "manual",
            "confirm": True,
            "metadata": {"payment_id": payment_id},
        }
        if Capability.INCREMENT in self.capabilities:
            params["payment_method_options"] = {
                "card": {"request_incremental_authorization": "if_available"}
            }
        return self._call(
            amount,
            lambda: self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": key},
            ),
            self._held,
        )

    def increment(self, *, key: str, reference: str, amount: Money) -> Result:
        if Capability.INCREMENT not in self.capabilities:
            return _refused(
                amount, ErrorCode.UNSUPPORTED, "incremental authorization is off for this account"
            )
        return self._call(
            amount,
            lambda: self._client.v1.payment_intents.increment_authorization(
                reference, params={"amount": amount.minor}, options={"idempotency_key": key}
            ),
            self._held,
        )

    def capture(self, *, key: str, reference: str, amount: Money) -> Result:
        def captured(intent: Mapping[str, Any], asked: Money) -> Result:
            if intent.get("status") != "succeeded":
                return _unexpected(intent, asked)
            received = intent.get("amount_received")
            minor = received if isinstance(received, int) else asked.minor
            return _result(Outcome.APPROVED, Money(minor, asked.currency), intent)

        result = self._call(
            amount,
            lambda: self._client.v1.payment_intents.capture(
                reference,
                params={"amount_to_capture": amount.minor},
                options={"idempotency_key": key},
            ),
            captured,
        )
        error = result.error
        if error is None or error.code is not ErrorCode.INVALID_REQUEST:
            return result
        # A refused capture of more than the hold is AMOUNT_INVALID, whatever code the answer
        # carried (asked only on this refusal, so a capture costs no extra round trip).
        try:
            now = self.status(payment_id="", reference=reference)
        except ProcessorUnreachable:
            return result
        if (
            now.state is PaymentState.HELD
            and now.held is not None
            and now.held.currency == amount.currency
            and amount.minor > now.held.minor
        ):
            return replace(result, error=replace(error, code=ErrorCode.AMOUNT_INVALID))
        return result

    def release(self, *, key: str, reference: str, amount: Money) -> Result:
        def released(intent: Mapping[str, Any], asked: Money) -> Result:
            zero = Money.zero(str(intent.get("currency", "eur")).upper())
            if intent.get("status") != "canceled":
                return _unexpected(intent, zero)
            return _result(Outcome.APPROVED, zero, intent)

        return self._call(
            Money.zero(amount.currency),
            lambda: self._client.v1.payment_intents.cancel(
                reference, options={"idempotency_key": key}
            ),
            released,
        )

    def refund(
        self, *, key: str, reference: str, amount: Money, destination: str | None = None
    ) -> Result:
        if destination is not None:
            return _refused(amount, ErrorCode.INVALID_REQUEST, "stripe refunds go to the card")
        try:
            now = self.status(payment_id="", reference=reference)
        except ProcessorUnreachable as exc:
            return _no_answer(amount, str(exc))
        if now.state is PaymentState.NOT_FOUND:
            return _refused(amount, ErrorCode.NOT_FOUND, f"no payment {reference}")
        if now.state is not PaymentState.CAPTURED or now.captured is None or now.refunded is None:
            return _refused(amount, ErrorCode.AMOUNT_INVALID, "nothing captured to refund")
        left = now.captured - now.refunded
        if amount.currency != left.currency or amount.minor <= 0 or amount > left:
            return _refused(
                amount,
                ErrorCode.AMOUNT_INVALID,
                f"refund of {amount} asked, {left} captured and not yet refunded",
            )

        def refunded(refund: Mapping[str, Any], asked: Money) -> Result:
            if refund.get("status") not in ("succeeded", "pending"):
                return _unexpected(refund, asked)
            outcome = Outcome.APPROVED if refund["status"] == "succeeded" else Outcome.PENDING
            minor = refund.get("amount", asked.minor)
            return Result(
                outcome=outcome,
                amount=Money(int(minor), asked.currency),
                reference=reference,
                raw=dict(refund),
            )

        return self._call(
            amount,
            lambda: self._client.v1.refunds.create(
                params={
                    "payment_intent": reference,
                    "amount": amount.minor,
                    "metadata": {"refund_key": key},
                },
                options={"idempotency_key": key},
            ),
            refunded,
        )

    # -- status and webhooks ---------------------------------------------------------------

    def status(self, *, payment_id: str, reference: str | None) -> PaymentStatus:
        try:
            if reference:
                intent: Mapping[str, Any] = self._client.v1.payment_intents.retrieve(
                    reference, params={"expand": ["latest_charge"]}
                ).to_dict()
            else:
                found = self._client.v1.payment_intents.search(
                    params={
                        "query": f"metadata['payment_id']:'{_quoted(payment_id)}'",
                        "expand": ["data.latest_charge"],
                    }
                ).to_dict()
                if not found.get("data"):
                    return _not_found(reference or "")
                intent = found["data"][0]
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing" or exc.http_status == 404:
                return _not_found(reference or "")
            raise ProcessorUnreachable(f"stripe refused the status request: {exc}") from None
        except stripe.StripeError as exc:
            raise ProcessorUnreachable(f"stripe status: {type(exc).__name__}") from None
        return _status_of(intent)

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        signature = _header(headers, "Stripe-Signature")
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, self._webhook_secret, WEBHOOK_TOLERANCE_S
            )
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"stripe signature: {exc.user_message or exc}") from None
        try:
            event = json.loads(body)
            kind = EVENT_KINDS[event["type"]]
            obj = event["data"]["object"]
            currency = str(obj["currency"]).upper()
            if kind is WebhookKind.REFUNDED:
                reference = obj["payment_intent"]
                minor = obj["amount_refunded"]
                payment_id = (obj.get("metadata") or {}).get("payment_id")
            else:
                reference = obj["id"]
                minor = _event_amount(kind, obj)
                payment_id = (obj.get("metadata") or {}).get("payment_id")
            return WebhookEvent(
                event_id=str(event["id"]),
                kind=kind,
                reference=str(reference),
                payment_id=str(payment_id) if payment_id else None,
                amount=Money(int(minor), currency),
                raw=event,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(f"stripe event not understood: {exc!r}") from None

    # -- plumbing --------------------------------------------------------------------------

    def _held(self, intent: Mapping[str, Any], asked: Money) -> Result:
        status = intent.get("status")
        if status == "requires_capture":
            capturable = intent.get("amount_capturable")
            minor = capturable if isinstance(capturable, int) else int(intent["amount"])
            outcome = Outcome.APPROVED if minor >= asked.minor else Outcome.PARTIALLY_APPROVED
            return _result(outcome, Money(minor, asked.currency), intent)
        if status == "requires_action":
            return _result(
                Outcome.DECLINED,
                Money.zero(asked.currency),
                intent,
                ProcessorError(
                    code=ErrorCode.AUTHENTICATION_REQUIRED,
                    message="the card asks for 3-D Secure, which the payment page must run",
                    processor_code="requires_action",
                ),
            )
        if status == "processing":
            return _result(Outcome.PENDING, Money.zero(asked.currency), intent)
        return _unexpected(intent, asked)

    def _call(
        self,
        asked: Money,
        request: Any,
        answer: Any,
    ) -> Result:
        """Run one SDK request; every Stripe error becomes a `Result` (the port's rule)."""
        try:
            obj = request()
        except stripe.CardError as exc:
            return _declined(asked, exc)
        except stripe.APIConnectionError as exc:
            # No answer: the request may or may not have reached Stripe.
            log.warning("event=stripe_no_answer account=%s error=%s", self.account, type(exc))
            return _no_answer(asked, "no answer from stripe")
        except stripe.RateLimitError as exc:
            return _refused(asked, ErrorCode.RATE_LIMITED, str(exc.user_message), exc=exc)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            return _refused(asked, ErrorCode.CONFIGURATION, str(exc.user_message), exc=exc)
        except stripe.IdempotencyError as exc:
            return _refused(asked, ErrorCode.INVALID_REQUEST, str(exc.user_message), exc=exc)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 402:  # a decline reported as a request error
                return _declined(asked, exc)
            code = REQUEST_CODES.get(exc.code or "", ErrorCode.INVALID_REQUEST)
            if exc.http_status == 404 and code is ErrorCode.INVALID_REQUEST:
                code = ErrorCode.NOT_FOUND
            return _refused(asked, code, str(exc.user_message or exc), exc=exc)
        except stripe.APIError as exc:
            # Stripe: a 500 means the outcome is indeterminate; ask `status`.
            return Result(
                outcome=Outcome.UNKNOWN,
                amount=Money.zero(asked.currency),
                error=_error(ErrorCode.PROCESSOR_UNAVAILABLE, "stripe API error", exc),
            )
        result: Result = answer(obj.to_dict(), asked)
        return result


def _quoted(value: str) -> str:
    """A value inside a Search API query's single quotes (https://docs.stripe.com/search)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _error(code: ErrorCode, message: str, exc: stripe.StripeError | None = None) -> ProcessorError:
    body = exc.json_body if exc is not None and isinstance(exc.json_body, dict) else {}
    detail = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(detail, dict)
    processor_code = detail.get("decline_code") or detail.get("code") or ""
    if not processor_code and exc is not None and exc.http_status is not None:
        processor_code = f"http_{exc.http_status}"
    return ProcessorError(
        code=code,
        message=message,
        processor_code=str(processor_code),
        advice_code=detail.get("network_advice_code") or detail.get("advice_code"),
    )


def _declined(asked: Money, exc: stripe.StripeError) -> Result:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    detail = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(detail, dict)
    reason = str(detail.get("decline_code") or detail.get("code") or "card_declined")
    code = DECLINE_CODES.get(reason, REQUEST_CODES.get(reason, ErrorCode.CARD_DECLINED))
    if code is ErrorCode.INVALID_REQUEST:
        code = ErrorCode.CARD_DECLINED
    intent = detail.get("payment_intent")
    reference = intent.get("id", "") if isinstance(intent, dict) else ""
    return Result(
        outcome=Outcome.DECLINED,
        amount=Money.zero(asked.currency),
        reference=str(reference),
        error=_error(code, str(exc.user_message or "declined"), exc),
        raw=body,
    )


def _refused(
    asked: Money, code: ErrorCode, message: str, *, exc: stripe.StripeError | None = None
) -> Result:
    raw = exc.json_body if exc is not None and isinstance(exc.json_body, dict) else {}
    return Result(
        outcome=Outcome.DECLINED,
        amount=Money.zero(asked.currency),
        error=_error(code, message, exc),
        raw=raw,
    )


def _no_answer(asked: Money, message: str) -> Result:
    return Result(
        outcome=Outcome.UNKNOWN,
        amount=Money.zero(asked.currency),
        error=ProcessorError(code=ErrorCode.TIMEOUT, message=message),
    )


def _result(
    outcome: Outcome,
    amount: Money,
    obj: Mapping[str, Any],
    error: ProcessorError | None = None,
) -> Result:
    return Result(
        outcome=outcome, amount=amount, reference=str(obj.get("id", "")), error=error, raw=obj
    )


def _unexpected(obj: Mapping[str, Any], asked: Money) -> Result:
    """An answer in a state the call should not leave: the outcome is not what was asked."""
    return _result(
        Outcome.DECLINED,
        Money.zero(asked.currency),
        obj,
        ProcessorError(
            code=ErrorCode.ALREADY_SETTLED
            if obj.get("status") in ("succeeded", "canceled")
            else ErrorCode.CARD_DECLINED,
            message=f"stripe answered status {obj.get('status')!r}",
            processor_code=str(obj.get("status", "")),
        ),
    )


def _not_found(reference: str) -> PaymentStatus:
    zero = Money.zero("EUR")
    return PaymentStatus(
        state=PaymentState.NOT_FOUND, reference=reference, held=zero, captured=zero, refunded=zero
    )


def _charge_amounts(intent: Mapping[str, Any]) -> tuple[int, int]:
    """(captured, refunded) in minor units, from the PaymentIntent and its latest charge.

    Stripe's current API gives ``amount_received`` and the charge's ``amount_captured`` and
    ``amount_refunded``. Peers that model the older shape (localstripe) give neither captured
    field and show the uncaptured rest of a partial capture as a refund on the charge; there
    the refunds this adapter made are the ones carrying ``metadata[refund_key]``."""
    charge = intent.get("latest_charge")
    if not isinstance(charge, Mapping):
        charge = {}
    if isinstance(intent.get("amount_received"), int):
        captured = int(intent["amount_received"])
        return captured, int(charge.get("amount_refunded", 0))
    refunds = charge.get("refunds")
    rows = refunds.get("data", []) if isinstance(refunds, Mapping) else []
    ours = sum(int(r["amount"]) for r in rows if (r.get("metadata") or {}).get("refund_key"))
    released = sum(
        int(r["amount"]) for r in rows if not (r.get("metadata") or {}).get("refund_key")
    )
    return int(charge.get("amount", intent.get("amount", 0))) - released, ours


def _status_of(intent: Mapping[str, Any]) -> PaymentStatus:
    currency = str(intent["currency"]).upper()
    status = intent.get("status")
    amount = int(intent.get("amount", 0))
    zero = Money.zero(currency)
    reference = str(intent.get("id", ""))
    if status == "requires_capture":
        capturable = intent.get("amount_capturable")
        held = capturable if isinstance(capturable, int) else amount
        return PaymentStatus(
            state=PaymentState.HELD,
            reference=reference,
            held=Money(held, currency),
            captured=zero,
            refunded=zero,
            raw=intent,
        )
    if status == "succeeded":
        captured, refunded = _charge_amounts(intent)
        return PaymentStatus(
            state=PaymentState.CAPTURED,
            reference=reference,
            held=zero,
            captured=Money(captured, currency),
            refunded=Money(refunded, currency),
            raw=intent,
        )
    if status == "canceled":
        state = PaymentState.RELEASED
    elif status == "requires_payment_method" and intent.get("last_payment_error"):
        state = PaymentState.DECLINED
    else:
        state = PaymentState.PENDING
    return PaymentStatus(
        state=state, reference=reference, held=zero, captured=zero, refunded=zero, raw=intent
    )


def _event_amount(kind: WebhookKind, obj: Mapping[str, Any]) -> int:
    if kind is WebhookKind.CAPTURED:
        received = obj.get("amount_received")
        return int(received) if isinstance(received, int) else int(obj["amount"])
    if kind is WebhookKind.HELD:
        capturable = obj.get("amount_capturable")
        return int(capturable) if isinstance(capturable, int) else int(obj["amount"])
    return 0 if kind is WebhookKind.RELEASED else int(obj.get("amount", 0))
