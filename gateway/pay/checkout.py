"""Paying a kiosk's code on the phone: claim the code, hold the money, ask the kiosk to start.

The order is what keeps a driver from paying twice or for nothing: the code is claimed before
any processor is called (a second phone on the same code is refused before it is charged);
a declined or refused hold gives the code back; an approved hold spends the code and becomes
a start command for the kiosk, valid until the code expires (the kiosk never starts after
it, and the gateway releases the hold when the kiosk says it did not start or never answers:
`gateway.commands`).

Every hold goes through `Payments.hold_web` with the way to pay as its method
(`methods.WEB_CARD`, `WEB_WALLET`, `LIGHTNING`), which routing maps to the operator's
processor. A Lightning invoice is paid later, from the driver's own wallet: the payment waits
(`Paid.WAITING`, the code stays claimed) and is settled when it is paid — by the processor's
webhook, by the phone's page asking again, or by `WaitingPayments` polling — whichever comes
first; `Codes.spend` lets exactly one of them send the start. An invoice paid after the code
expired never starts the kiosk: its hold is released at once.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from gateway.commands import Commands
from gateway.jobs.runner import Job
from gateway.ledger.idempotency import StoredAnswer
from gateway.pay.codes import PAYING, SPENT, PayCode, PayCodes
from gateway.payments import Payments
from gateway.payments.answers import Refusal, Unanswered
from gateway.processors import CardRef
from terminal.money import Money

log = logging.getLogger("ev_gateway.pay")

WAITING_EVERY_S = 2.0  # how often waiting payments (unpaid invoices) are asked about


class Paid(enum.Enum):
    STARTING = "starting"  # held; the kiosk is asked to start
    WAITING = "waiting"  # an invoice waits for the driver's wallet; the code stays claimed
    DECLINED = "declined"  # nothing held; the code may be tried again
    UNUSABLE = "unusable"  # the code is unknown, spent, being paid or expired: nothing charged
    UNKNOWN = "unknown"  # the processor did not answer: the reconciler settles the hold
    LATE = "late"  # paid after the code expired: the kiosk is not started, the hold released


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    paid: Paid
    authorization_id: str | None = None
    reason: str = ""
    # For a waiting payment, what the payer needs (Lightning: `bolt11`, `sats`, the rate).
    pay: Mapping[str, Any] = field(default_factory=dict)


def _nothing(_conn: Connection, _answer: StoredAnswer) -> None:
    """A hold made on the web answers no terminal request: nothing to store for a key."""


class Checkout:
    def __init__(self, codes: PayCodes, payments: Payments, commands: Commands) -> None:
        self.codes = codes
        self.payments = payments
        self.commands = commands

    def pay(self, code: str, card: CardRef) -> Outcome:
        found = self.codes.get(code)
        if found is None or not found.open_at(self.codes.ledger.clock()):
            return Outcome(paid=Paid.UNUSABLE, reason="used_or_expired")
        # The authorization id is the kiosk's session id, and the phone's key to its page:
        # 192 random bits, never guessed.
        aid = secrets.token_urlsafe(24)
        if not self.codes.claim(code, aid):
            return Outcome(paid=Paid.UNUSABLE, reason="used_or_expired")
        return self._hold(found, aid, card)

    def settle(self, authorization_id: str) -> Outcome:
        """Ask again about a payment made on a code (the phone's page refreshing, a webhook
        having arrived, `WaitingPayments`): a waiting invoice found paid starts the kiosk.
        Safe to call any number of times, from any worker."""
        aid = authorization_id
        found = self.codes.for_authorization(aid)
        row = self.payments.ledger.fetch(aid)
        if found is None or row is None:
            return Outcome(paid=Paid.UNUSABLE, authorization_id=aid)
        if found.state == SPENT:
            return Outcome(paid=Paid.STARTING, authorization_id=aid)
        if found.state != PAYING:
            return Outcome(paid=Paid.DECLINED, authorization_id=aid)
        card = CardRef(
            kind=row.card_kind,
            token=row.card_token,
            brand=row.card_brand,
            last4=row.card_last4,
            expiry=None,
            payload={},
        )
        return self._hold(found, aid, card)

    def _hold(self, found: PayCode, aid: str, card: CardRef) -> Outcome:
        amount = Money(found.offer.hold_minor, found.offer.currency)
        try:
            held = self.payments.hold_web(
                authorization_id=aid, terminal_id=found.terminal_id, card=card, amount=amount
            )
        except Refusal as refusal:
            if refusal.transient:  # another request is asking the processor right now
                return Outcome(paid=Paid.WAITING, authorization_id=aid)
            self.codes.release(found.code, aid)
            log.info(
                "event=web_pay_refused code_terminal=%s code=%s", found.terminal_id, refusal.code
            )
            return Outcome(paid=Paid.DECLINED, reason=refusal.code)
        except Unanswered:
            # The hold may exist: the code stays claimed (no second payment on it) and the
            # reconciler finds out; with no start command, a hold it finds is released.
            log.warning("event=web_pay_unanswered authorization=%s", aid)
            return Outcome(paid=Paid.UNKNOWN, authorization_id=aid)
        body = held.answer.body
        if body.get("status") == "pending":
            return Outcome(paid=Paid.WAITING, authorization_id=aid, pay=held.pay)
        if body.get("status") != "approved":
            self.codes.release(found.code, aid)
            return Outcome(paid=Paid.DECLINED, reason=str(body.get("decline_reason") or "declined"))
        return self._start(found, aid, card)

    def _start(self, found: PayCode, aid: str, card: CardRef) -> Outcome:
        if self.codes.ledger.clock() >= found.expires_at:
            # Paid after the code's lifetime (an invoice paid late): the kiosk may have shown
            # another code since, and never starts on this one. Nothing is charged.
            if self.codes.spend(found.code, aid):
                log.warning("event=web_paid_late authorization=%s", aid)
                try:
                    self.payments.void(aid, found.terminal_id, "paid_after_code_expired", _nothing)
                except (Refusal, Unanswered):
                    # Left approved with no start: `CommandExpiry` releases it later.
                    log.exception("event=web_paid_late_release_failed authorization=%s", aid)
            return Outcome(paid=Paid.LATE, authorization_id=aid)
        # The code is spent in the transaction that writes the start: whoever wins the
        # compare-and-set sends it, and a gateway dying in between leaves either both or
        # neither (the code still being paid, which `WaitingPayments` finishes).
        sent = self.commands.start(
            aid,
            expires_at=found.expires_at,
            brand=card.brand or "Web",
            last4=card.last4,
            guard=lambda conn: self.codes.spend_in(conn, found.code, aid),
        )
        if sent is not None:
            log.info("event=web_paid terminal=%s authorization=%s", found.terminal_id, aid)
        return Outcome(paid=Paid.STARTING, authorization_id=aid)


class WaitingPayments(Job):
    """Asks about every payment still waiting on its code (an unpaid Lightning invoice):
    the polling half of "paid by webhook and by polling", for a phone that closed its page
    and a processor whose webhook did not arrive."""

    name = "waiting_payments"

    def __init__(self, checkout: Checkout, every_s: float = WAITING_EVERY_S) -> None:
        super().__init__(checkout.codes.ledger, every_s)
        self.checkout = checkout

    def work(self) -> int:
        waiting = self.checkout.codes.waiting_payments()
        for aid in waiting:
            try:
                self.checkout.settle(aid)
            except Exception:
                log.exception("event=waiting_payment_failed authorization=%s", aid)
        return len(waiting)
