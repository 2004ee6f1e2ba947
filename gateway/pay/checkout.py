"""Paying a kiosk's code on the phone: claim the code, hold the money, ask the kiosk to start.

The order is what keeps a driver from paying twice or for nothing: the code is claimed before
any processor is called (a second phone on the same code is refused before it is charged);
a declined or refused hold gives the code back; an approved hold spends the code and becomes
a start command for the kiosk, valid until the code expires (the kiosk never starts after
it, and the gateway releases the hold when the kiosk says it did not start or never answers:
`gateway.commands`).
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from gateway.commands import Commands
from gateway.ledger.idempotency import StoredAnswer
from gateway.pay.codes import PayCodes
from gateway.payments import Payments, Refusal, Unanswered
from gateway.processors import CardRef
from terminal.money import Money

log = logging.getLogger("ev_gateway.pay")


class Paid(enum.Enum):
    STARTING = "starting"  # held; the kiosk is asked to start
    DECLINED = "declined"  # nothing held; the code may be tried again
    UNUSABLE = "unusable"  # the code is unknown, spent, being paid or expired: nothing charged
    UNKNOWN = "unknown"  # the processor did not answer: the reconciler settles the hold


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    paid: Paid
    authorization_id: str | None = None
    reason: str = ""


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
        offer = found.offer
        amount = Money(offer.hold_minor, offer.currency)
        try:
            answer = self.payments.place_hold(aid, found.terminal_id, amount, card, _nothing)
        except Refusal as refusal:
            self.codes.release(code, aid)
            log.info(
                "event=web_pay_refused code_terminal=%s code=%s", found.terminal_id, refusal.code
            )
            return Outcome(paid=Paid.DECLINED, reason=refusal.code)
        except Unanswered:
            # The hold may exist: the code stays claimed (no second payment on it) and the
            # reconciler finds out; with no start command, a hold it finds is released.
            log.warning("event=web_pay_unanswered authorization=%s", aid)
            return Outcome(paid=Paid.UNKNOWN, authorization_id=aid)
        if answer.body.get("status") != "approved":
            self.codes.release(code, aid)
            return Outcome(
                paid=Paid.DECLINED, reason=str(answer.body.get("decline_reason") or "declined")
            )
        self.codes.spend(code, aid)
        self.commands.start(
            aid, expires_at=found.expires_at, brand=card.brand or "Web", last4=card.last4
        )
        log.info("event=web_paid terminal=%s authorization=%s", found.terminal_id, aid)
        return Outcome(paid=Paid.STARTING, authorization_id=aid)
