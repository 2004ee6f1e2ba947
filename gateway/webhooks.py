"""Processors' notifications (webhooks): verified, deduplicated, applied as state transitions.

One endpoint per configured processor account, `POST /webhooks/{processor}/{account}` (the
account names the secret the signature is checked with). In order:
1. The adapter verifies the signature before anything in the body is read
   (`Processor.parse_webhook`: Stripe's `Stripe-Signature` with its five-minute tolerance,
   Adyen's HMAC, LNbits's payment confirmed with LNbits). A forged, stale or malformed
   notification is refused (400) and changes nothing.
2. The processor's own event id is looked up in `webhook_events`: a notification taken before
   (a replay, a retry) is answered as accepted and changes nothing.
3. The payment is found by the gateway's id the processor echoed, else by the processor's
   reference on this account. If it has a step in flight whose outcome the notification
   gives — an Adyen capture, cancel, refund or amount update (Adyen answers those
   `received` and reports them only here), a Lightning invoice paid, a Stripe step whose
   answer was lost — the step is finished with it, exactly as its own answer would have been
   (`Payments.finish_from_notice`, a conditional update on the step's key, so a race with
   the step's own answer or the reconciler records it once). A notification about a step
   already finished, or arriving late out of order, changes nothing.
4. The event is remembered. While the step's own worker is still calling the processor the
   answer is 503 and nothing is remembered, so the processor sends it again later.
A notification that fails verification is not believed, but the processor is asked
(`status`) about the account's steps left without an answer, as the reconciler would.
Adyen expects the body ``[accepted]`` for every notification it should not resend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.ledger.store import AuthorizationRow
from gateway.payments import Payments
from gateway.processors.port import (
    ErrorCode,
    Outcome,
    ProcessorError,
    Result,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from gateway.processors.registry import UnknownProcessor
from terminal.money import Money

log = logging.getLogger("ev_gateway.webhooks")

# After a notification fails verification, the account's unanswered steps are looked up at
# the processor at most this often, and at most this many at a time.
ASK_EVERY_S = 10.0
ASK_AT_MOST = 20
# What each processor expects in the body of an accepted notification.
ACCEPTED_BODY = {"adyen": "[accepted]"}
# Adyen's event codes, for the step a refused modification was (a failed notification is
# mapped to DECLINED by the adapter; its eventCode says of which step).
ADYEN_STEP = {
    "AUTHORISATION": "hold",
    "AUTHORISATION_ADJUSTMENT": "increment",
    "CAPTURE": "capture",
    "CANCELLATION": "release",
    "REFUND": "refund",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAnswer:
    status_code: int
    body: str


def step_result(event: WebhookEvent, row: AuthorizationRow) -> Result | None:
    """The result the notification gives the open step on `row`, or None if it does not give
    that step's outcome."""
    op, currency = row.op, row.currency
    if event.amount.currency != currency:
        return None
    approved = Result(outcome=Outcome.APPROVED, amount=event.amount, reference=event.reference)
    kind = event.kind
    if kind in (WebhookKind.HELD, WebhookKind.PAID) and op in ("hold", "increment"):
        return approved
    if kind is WebhookKind.CAPTURED and op == "capture":
        return approved if event.amount.minor == int(row.op_amount) else None
    if kind is WebhookKind.RELEASED and op == "release":
        return approved
    if kind is WebhookKind.REFUNDED and op == "refund":
        # Adyen reports this refund's amount, Stripe the charge's refunds in all.
        wanted = int(row.op_amount)
        if event.amount.minor in (wanted, int(row.amount_refunded) + wanted):
            return replace(approved, amount=Money(wanted, currency))
        return None
    if kind is WebhookKind.DECLINED:
        code = str(event.raw.get("eventCode", "AUTHORISATION"))
        if ADYEN_STEP.get(code, "hold") != op:
            return None
        # (Adyen's `reason` is not kept: on an authorisation it carries the card's last
        # digits and expiry.)
        return Result(
            outcome=Outcome.DECLINED,
            amount=Money(0, currency),
            reference=event.reference,
            error=event.error
            or ProcessorError(code=ErrorCode.CARD_DECLINED, message="refused, by notification"),
        )
    return None


class Webhooks:
    """Takes the notifications of every configured processor account."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self.ledger = payments.ledger
        self._asked: dict[tuple[str, str], float] = {}

    def receive(
        self, processor: str, account: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookAnswer:
        try:
            adapter = self.payments.processors.get(processor, account)
        except UnknownProcessor:
            return WebhookAnswer(status_code=404, body="no such processor account")
        try:
            event = adapter.parse_webhook(headers=headers, body=body)
        except WebhookRejected as exc:
            log.warning(
                "event=webhook_refused processor=%s account=%s reason=%s", processor, account, exc
            )
            self._ask_instead(processor, account)
            return WebhookAnswer(status_code=400, body="refused")
        accepted = WebhookAnswer(status_code=200, body=ACCEPTED_BODY.get(processor, "ok"))
        if self.ledger.webhook_seen(processor, account, event.event_id):
            return accepted
        row = self._payment(processor, account, event)
        effect = "unknown"
        if row is not None:
            effect = self.payments.finish_from_notice(
                row.id, lambda current: step_result(event, current)
            )
            if effect == "busy":
                return WebhookAnswer(status_code=503, body="busy: send again later")
        self.ledger.record_webhook(
            processor=processor,
            account=account,
            event_id=event.event_id,
            kind=event.kind.value,
            reference=event.reference,
            authorization_id=row.id if row is not None else None,
            effect=effect,
        )
        log.info(
            "event=webhook processor=%s account=%s kind=%s authorization=%s effect=%s",
            processor,
            account,
            event.kind.value,
            row.id if row is not None else "-",
            effect,
        )
        return accepted

    def _ask_instead(self, processor: str, account: str) -> None:
        """A notification that failed verification is not believed, but it may mean that
        something happened: ask the processor (`status`, through `Payments.resolve`) about this
        account's steps left without an answer. At most once per `ASK_EVERY_S` per account, so
        a flood of forgeries cannot turn into a flood of calls to the processor."""
        now = time.monotonic()
        if now - self._asked.get((processor, account), -ASK_EVERY_S) < ASK_EVERY_S:
            return
        self._asked[(processor, account)] = now
        unknown = [
            row
            for row in self.ledger.unsettled_steps(self.ledger.clock())
            if (row.processor, row.merchant_account) == (processor, account)
            and row.op_state == "unknown"
        ]
        for row in unknown[:ASK_AT_MOST]:
            if self.payments.resolve(row.id):
                log.info("event=step_resolved authorization=%s step=%s via=status", row.id, row.op)

    def _payment(
        self, processor: str, account: str, event: WebhookEvent
    ) -> AuthorizationRow | None:
        if event.payment_id:
            row = self.ledger.fetch(event.payment_id)
            if row is not None and (row.processor, row.merchant_account) == (processor, account):
                return row
        return self.ledger.by_reference(processor, account, event.reference)
