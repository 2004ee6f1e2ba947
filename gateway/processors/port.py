"""The processor port: what the gateway asks of a payment processor, and what it gets back.

One adapter per processor (simulated, Stripe, Adyen, Lightning) implements `Processor`. The
shape is learnt from ActiveMerchant's gateways (one uniform response, the processor's raw
answer kept beside it), Hyperswitch's connectors (a normalised error taxonomy, retryable or
not) and Saleor's payment apps (webhooks mapped to state transitions), cut to what a charging
session needs: a hold before energy flows, increments while it flows, one partial capture at
the end, or a release; refunds later by the operator.

Rules every adapter keeps (the conformance suite in `tests/processors/` checks them):
- Every money call carries the gateway's idempotency key, passed through to the processor's
  own idempotency mechanism: the same key twice has one effect and the same answer.
- A call never raises for a processor's answer: a refusal is a `Result` with an outcome and a
  `ProcessorError`; a timeout or a lost connection is `Outcome.UNKNOWN` (retryable), and the
  gateway then asks `status` rather than calling blind again. Only a programming error raises.
- `payment_id` is the gateway's own id for the payment (the authorization id). It is sent to
  the processor (merchant reference, metadata) so `status` finds a payment whose hold answer
  was lost, before the gateway knew the processor's reference.
- Amounts are integer minor units of an ISO 4217 currency (`Money`); nothing else crosses.
- Card data in clear (`CardRef.clear`) exists only in memory for the one `hold` call; an
  adapter never logs it, stores it or puts it in `Result.raw`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from terminal.money import Money


class Outcome(enum.Enum):
    """What a money call did, normalised across processors."""

    APPROVED = "approved"  # done in full
    PARTIALLY_APPROVED = "partially_approved"  # a hold or increment approved for less
    DECLINED = "declined"  # definitely not done; `error` says why
    # accepted, the result comes later (webhook, poll): Lightning invoices, and Adyen's
    # modifications (capture, cancel, refund, amount update), which Adyen confirms by notification
    PENDING = "pending"
    UNKNOWN = "unknown"  # no answer: ask `status` before anything else


class ErrorCode(enum.Enum):
    """The normalised error taxonomy (a short standard list, as ActiveMerchant's)."""

    CARD_DECLINED = "card_declined"  # the issuer said no, no more detail
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INVALID_CARD = "invalid_card"  # number, expiry or cryptogram refused
    FRAUD_SUSPECTED = "fraud_suspected"
    AUTHENTICATION_REQUIRED = "authentication_required"  # SCA / 3-D Secure needed
    AMOUNT_INVALID = "amount_invalid"  # above the hold, below the minimum, wrong currency
    ALREADY_SETTLED = "already_settled"  # captured, released or refunded already
    NOT_FOUND = "not_found"  # no such payment at the processor
    UNSUPPORTED = "unsupported"  # this processor or account cannot do that
    INVALID_REQUEST = "invalid_request"  # the adapter sent something the processor refused
    CONFIGURATION = "configuration"  # credentials or account wrong: an operator must act
    RATE_LIMITED = "rate_limited"
    PROCESSOR_UNAVAILABLE = "processor_unavailable"  # 5xx, maintenance
    TIMEOUT = "timeout"  # no answer in time: the outcome is unknown


# Codes a later retry of the same call may turn into a success.
RETRYABLE = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.PROCESSOR_UNAVAILABLE, ErrorCode.TIMEOUT})


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorError:
    """Why a call was refused or not answered: the normalised code beside the processor's own.

    `advice_code` is the card network's merchant advice code where the processor gives one
    (e.g. Mastercard MAC 03 "do not try again"; Stripe's `network_advice_code`)."""

    code: ErrorCode
    message: str
    processor_code: str = ""
    advice_code: str | None = None

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class Capability(enum.Enum):
    """What an adapter (for its configured account) can do, and how its answers arrive.

    The conformance suite (`tests/processors/test_conformance.py`) holds every adapter to the
    same assertions, read through these: an adapter without a capability answers the call
    it would need with a clean `ErrorCode.UNSUPPORTED` refusal (or, for `status`,
    `ProcessorUnreachable`), never a half-done effect."""

    INCREMENT = "increment"  # incremental authorization
    PARTIAL_CAPTURE = "partial_capture"
    REFUND = "refund"  # refunds back along the payment (the card it came from)
    # Refunds paid out to where the payer says (`refund`'s `destination`): a Lightning
    # invoice from the payer's own wallet, for the refunded amount at the payment's rate.
    REFUND_TO_DESTINATION = "refund_to_destination"
    WEBHOOK = "webhook"
    CARD_PRESENT = "card_present"  # takes the kiosk reader's protected card data
    WEB = "web"  # takes payments from the phone's payment page
    STATUS = "status"  # `status` reports a payment's state (Adyen publishes none)
    # Capture, release, refund and increment are accepted (`Outcome.PENDING`) and their
    # outcome arrives in the processor's notification (Adyen's modifications).
    NOTIFIED = "notified"
    # A prepayment (Lightning): `hold` is an invoice, `PENDING` until the payer pays it in
    # full, then held (the same key again answers approved; an invoice that expired unpaid,
    # declined). `capture` keeps part of what was paid and records the rest as owed back to
    # the payer; `release` of a paid invoice records all of it as owed back.
    PREPAID = "prepaid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The answer to one money call.

    `amount` is what the call left in force: the whole hold after `hold` or `increment` (less
    than asked when partially approved), the amount captured after `capture`, the amount of
    this refund after `refund`, zero after `release`. `reference` is the processor's id of the
    payment (a PaymentIntent id, a PSP reference, an invoice hash). `raw` is the processor's
    answer as it came, for the audit trail: never card data."""

    outcome: Outcome
    amount: Money
    reference: str = ""
    error: ProcessorError | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.outcome in (Outcome.APPROVED, Outcome.PARTIALLY_APPROVED)


class PaymentState(enum.Enum):
    """Where a payment stands at the processor, as `status` reports it."""

    NOT_FOUND = "not_found"  # the processor never placed it (a lost request, a decline)
    PENDING = "pending"  # waiting for the payer (an unpaid invoice) or for the processor
    HELD = "held"  # authorized, capturable
    CAPTURED = "captured"  # captured (refunds, if any, in `refunded`)
    RELEASED = "released"  # voided, cancelled or expired without capture
    DECLINED = "declined"


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentStatus:
    """What the processor says about one payment now. The amounts are None when the processor
    knows no such payment (`NOT_FOUND`)."""

    state: PaymentState
    reference: str
    held: Money | None
    captured: Money | None
    refunded: Money | None
    raw: Mapping[str, Any] = field(default_factory=dict)


class WebhookKind(enum.Enum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    REFUNDED = "refunded"
    DECLINED = "declined"
    PAID = "paid"  # a pending payment (a Lightning invoice) was paid


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    """A processor's notification, verified and mapped to a payment.

    `event_id` is the processor's own id of the notification (deduplication); `payment_id` the
    gateway's id if the processor echoed it, else None and `reference` finds the payment."""

    event_id: str
    kind: WebhookKind
    reference: str
    payment_id: str | None
    amount: Money
    raw: Mapping[str, Any] = field(default_factory=dict)
    # Why, for a `DECLINED` notification (a refused authorisation or modification).
    error: ProcessorError | None = None


class WebhookRejected(Exception):
    """A notification that failed verification (signature, timestamp, format): nothing in it
    may be believed; the gateway may ask `status` instead."""


class Processor(Protocol):
    """A payment processor, for one merchant account, as the gateway uses it."""

    name: str  # the adapter: "simulated", "stripe", "adyen", "lightning"
    account: str  # the merchant account this instance acts for

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this adapter, for its account, can do beyond hold, capture and release."""
        ...

    def hold(self, *, key: str, payment_id: str, card: Any, amount: Money) -> Result:
        """Authorize `amount` for later capture (a pre-authorization). `card` is a
        `gateway.processors.CardRef`."""
        ...

    def increment(self, *, key: str, reference: str, amount: Money) -> Result:
        """Raise the hold to `amount` in all (only with `Capability.INCREMENT`)."""
        ...

    def capture(self, *, key: str, reference: str, amount: Money) -> Result:
        """Capture `amount` (at most the hold) and release the rest."""
        ...

    def release(self, *, key: str, reference: str, amount: Money) -> Result:
        """Release the whole hold (void, cancel); `amount` is the hold being released, as the
        gateway recorded it (for the answer's currency and processors that want it)."""
        ...

    def refund(
        self, *, key: str, reference: str, amount: Money, destination: str | None = None
    ) -> Result:
        """Refund `amount` of a captured payment; several partial refunds may follow, never
        more in all than was captured. `destination` is where the money goes for a processor
        that cannot send it back along the payment (`Capability.REFUND_TO_DESTINATION`: the
        payer's Lightning invoice); the others refuse one (`ErrorCode.INVALID_REQUEST`)."""
        ...

    def status(self, *, payment_id: str, reference: str | None) -> PaymentStatus:
        """What the processor says about the payment now: by `reference` when known, else by
        the gateway's `payment_id`. A processor that cannot be reached raises
        `ProcessorUnreachable`, and so does one that publishes no payment status (without
        `Capability.STATUS`; Adyen: its notifications are the only record of a payment's
        state)."""
        ...

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Verify a notification's signature before reading it, then map it; any failure is
        `WebhookRejected`."""
        ...


class ProcessorUnreachable(Exception):
    """`status` got no answer: the processor's view is unknown for now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeQuote:
    """A payer's invoice found fit to receive a prepayment's change: what it pays and to whom
    (its payment hash), in satoshis at the rate recorded when the payment was made."""

    payment_hash: str
    sats: int
    btc_price: str  # the payment's rate, as recorded (a decimal string)


class ChangeRefused(Exception):
    """The payer's invoice cannot take the change: `code` says why, for the page to explain
    (`not_an_invoice`, `wrong_network`, `expired`, `wrong_amount`, `already_paid`,
    `nothing_owed`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@runtime_checkable
class PaysChange(Protocol):
    """A prepaid adapter (`Capability.PREPAID`) that pays the payer back the part of a
    prepayment not captured (the change), to an invoice from the payer's own wallet, and
    checks a refund's destination by the same rules before the operator sends it.

    The gateway calls `quote_change` first (no money moves), claims the step, then calls
    `pay_change` with the step's key outside any transaction; a step found unfinished is
    resolved by `change_status` (what the processor shows under that key), never by paying
    blind again."""

    def change_sats(self, *, reference: str, owed: Money) -> int:
        """The satoshis the change `owed` on the payment `reference` comes to, at the rate
        recorded when it was made (what the payer's invoice must ask). Raises
        `ChangeRefused` when nothing is owed, or `ProcessorUnreachable`."""
        ...

    def quote_change(self, *, reference: str, owed: Money, destination: str) -> ChangeQuote:
        """Check `destination` (the payer's invoice) for the change `owed` on the payment
        `reference`: decodable, on the payment's network, not expired, for exactly the owed
        satoshis, not already paid. Raises `ChangeRefused`, or `ProcessorUnreachable`."""
        ...

    def pay_change(self, *, key: str, reference: str, owed: Money, destination: str) -> Result:
        """Pay the change `owed` to `destination` once under `key` (the same key again
        answers the first payout)."""
        ...

    def quote_refund(self, *, reference: str, amount: Money, destination: str) -> ChangeQuote:
        """Check `destination` for a refund of `amount` of the captured payment `reference`
        (`Capability.REFUND_TO_DESTINATION`) the same way: the satoshis `amount` bought at
        the payment's rate, exactly. Raises `ChangeRefused`, or `ProcessorUnreachable`."""
        ...

    def change_status(self, *, key: str, reference: str) -> Result | None:
        """The payout made under `key`, as the processor shows it (approved, pending or
        declined), or None if it shows none. Raises `ProcessorUnreachable`."""
        ...
