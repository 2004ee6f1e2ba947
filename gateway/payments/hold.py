"""Placing a hold: a terminal's own authorization (`place_hold`, `authorize`) and a payment
made on the phone's page (`hold_web`), each a new authorization row with its hold step
claimed in the same transaction (`_new_hold`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.engine import Connection

from gateway import wire
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import CALLING, DECLINED, PENDING, VOIDED
from gateway.payments.answers import Refusal, Unanswered, in_progress
from gateway.payments.core import ClaimKey, Step, Store
from gateway.payments.recording import Recording
from gateway.processors import CardRef
from gateway.processors.methods import KIOSK_METHODS, PAYMENT, WEB_METHODS
from gateway.processors.port import Outcome
from terminal.errors import ProtectedDataError
from terminal.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class WebHold:
    """What `Payments.hold_web` tells the phone's payment page: the authorization's answer as a
    terminal would get it (`status` approved, declined, or `pending` while the processor waits
    for the payer), and for a pending one what the payer needs (`pay`: for Lightning the
    invoice, `bolt11` and `payment_hash`, with the sats, the BTC price and its source)."""

    answer: StoredAnswer
    pay: dict[str, Any] = field(default_factory=dict)


class Holds(Recording):
    """The hold: the first step of every authorization."""

    # -- hold -------------------------------------------------------------------------------
    def authorize(
        self,
        req: wire.AuthorizationRequest,
        store: Store,
        *,
        resumed: bool = False,
        claim: ClaimKey | None = None,
    ) -> StoredAnswer:
        """Place a hold. `resumed`: the request's key was claimed before and left
        unanswered (its earlier attempt got no answer); with `claim`, the key is claimed in
        the hold's first transaction and that says whether it was resumed."""
        card = CardRef(
            kind=req.card.kind,
            token=req.card.token,
            brand=req.card.brand,
            last4=req.card.last4,
            expiry=req.card.expiry,
            payload=dict(req.card.payload),
        )
        amount = self._money(req.amount.minor, req.amount.currency)
        return self.place_hold(
            req.authorization_id, req.terminal_id, amount, card, store, resumed=resumed, claim=claim
        )

    def place_hold(
        self,
        aid: str,
        terminal_id: str,
        amount: Money,
        card: CardRef,
        store: Store,
        *,
        resumed: bool = False,
        claim: ClaimKey | None = None,
    ) -> StoredAnswer:
        """Place a hold of `amount` on `card` for `terminal_id`'s session `aid`: a terminal's
        own authorization (`card.kind` one of `methods.KIOSK_METHODS`). A payment made on the
        phone's page goes through `hold_web` (a pending Lightning invoice, the re-ask)."""
        if card.kind not in KIOSK_METHODS:
            raise Refusal(
                400,
                "invalid_method",
                f"{card.kind!r} is not a kiosk payment method (web payments go through hold_web)",
            )
        amount = self._money(amount.minor, amount.currency)
        key = f"hold:{aid}"
        if card.kind == PAYMENT and self.vault is None and not self.unverified_cards:
            raise Refusal(400, "card_data_invalid", "this gateway holds no fleet keys")
        with self.ledger.write() as conn:
            if claim is not None:
                resumed = claim(conn)
            row, denied = self.ledger.get_listed(conn, aid, card.token)
            if row is not None and row.status == VOIDED and not row.processor:
                raise Refusal(409, "already_voided", "authorization was voided before it ran")
            if row is not None and row.terminal_id != terminal_id:
                raise Refusal(409, "duplicate_authorization", "authorization id already used")
            if row is not None and row.status != PENDING:
                # Finished by someone else (a void, the reconciler) while this request's key
                # was left unanswered: its retry gets the outcome. A new key is a duplicate.
                if resumed:
                    return self.authorization_answer(row)
                raise Refusal(409, "duplicate_authorization", "authorization id already used")
            clear = None
            if self.vault is not None:
                try:
                    clear = self.vault.open(
                        card, claim_ksn=lambda ksn: self.ledger.claim_ksn(conn, ksn, aid)
                    )
                except ProtectedDataError as exc:
                    raise Refusal(400, "card_data_invalid", str(exc)) from None
            if row is None:
                step = self._new_hold(
                    conn, aid, terminal_id, amount, card, key=key, store=store, denied=denied
                )
                if isinstance(step, StoredAnswer):
                    return step
            else:
                if not self._stale(row) or not self._take_over(conn, row):
                    raise in_progress()
                step = Step(
                    row=row,
                    processor=self.processors.get(row.processor, row.merchant_account),
                    key=key,
                    resume=True,
                )
        result = self._learn(step) if step.resume else None
        if result is None:
            result = step.processor.hold(
                key=key, payment_id=aid, card=replace(card, clear=clear), amount=amount
            )
        return self._record(step, result, store)

    def hold_web(
        self, *, authorization_id: str, terminal_id: str, card: CardRef, amount: Money
    ) -> WebHold:
        """Place the hold of a payment made on the phone's payment page (pay by phone), for the
        charging point `terminal_id`, which later captures or voids it through the terminal
        API like any hold of its own. `card.kind` is one of `methods.WEB_METHODS`; routing
        chooses the processor by it. Calling again with the same arguments is safe: an
        unfinished hold is looked up (`status`) and otherwise sent again under the same
        processor key, which each web processor answers with the first result (Stripe and
        Adyen by their idempotency key, LNbits by the invoice's `external_id`); a Lightning
        invoice stays `pending` (with the same invoice) until it is paid."""
        aid = authorization_id
        if card.kind not in WEB_METHODS:
            raise Refusal(400, "invalid_method", f"{card.kind!r} is not a web payment method")
        amount = self._money(amount.minor, amount.currency)
        key = f"hold:{aid}"

        def no_store(_conn: Connection, _answer: StoredAnswer) -> None:
            return None

        with self.ledger.write() as conn:
            row, denied = self.ledger.get_listed(conn, aid, card.token)
            if row is not None and (row.terminal_id != terminal_id or row.card_kind != card.kind):
                raise Refusal(409, "duplicate_authorization", "authorization id already used")
            if row is not None and row.status != PENDING:
                return WebHold(answer=self.authorization_answer(row))
            if row is None:
                step = self._new_hold(
                    conn, aid, terminal_id, amount, card, key=key, store=no_store, denied=denied
                )
                if isinstance(step, StoredAnswer):
                    return WebHold(answer=step)
            else:
                if not self._stale(row) or not self._take_over(conn, row):
                    raise in_progress()
                step = Step(
                    row=row,
                    processor=self.processors.get(row.processor, row.merchant_account),
                    key=key,
                    resume=True,
                )
        result = None
        if step.resume:
            try:
                result = self._learn(step)
            except Unanswered:  # no status at this processor (Adyen): send the hold again
                result = None
        if result is None or result.outcome is Outcome.UNKNOWN:
            result = step.processor.hold(key=key, payment_id=aid, card=card, amount=amount)
        if result.outcome is Outcome.PENDING:
            # Waiting for the payer: the step stays open (unknown) until `resolve` finds the
            # payment made (the reconciler, a webhook, or the page asking again).
            self._mark_unknown(aid, key)
            pending = StoredAnswer(
                status_code=200, body={"authorization_id": aid, "status": "pending"}
            )
            return WebHold(answer=pending, pay=dict(result.raw))
        return WebHold(answer=self._record(step, result, no_store))

    def _new_hold(
        self,
        conn: Connection,
        aid: str,
        terminal_id: str,
        amount: Money,
        card: CardRef,
        *,
        key: str,
        store: Store,
        denied: bool,
    ) -> Step | StoredAnswer:
        """Insert a new hold's row and claim its hold step; `denied`: the card's token is on
        the deny list (read with the row, `Ledger.get_listed`), so it is declined at once."""
        base = {
            "id": aid,
            "terminal_id": terminal_id,
            "currency": amount.currency,
            "amount_requested": amount.minor,
            "card_kind": card.kind,
            "card_token": card.token,
            "card_brand": card.brand,
            "card_last4": card.last4,
        }
        if denied:
            # The deny list the terminals also get (GET /v1/terminal-config) holds online.
            self.ledger.insert(conn, status=DECLINED, decline_reason="denied", **base)
            row = self.ledger.get(conn, aid)
            assert row is not None
            answer = self.authorization_answer(row)
            store(conn, answer)
            return answer
        processor = self.processors.route(
            terminal=terminal_id, currency=amount.currency, method=card.kind
        )
        row = self.ledger.insert_row(
            conn,
            status=PENDING,
            processor=processor.name,
            merchant_account=processor.account,
            op="hold",
            op_key=key,
            op_amount=amount.minor,
            op_state=CALLING,
            op_started_at=self.ledger.clock(),
            **base,
        )
        if row is None:
            raise in_progress()
        return Step(row=row, processor=processor, key=key, resume=False)
