"""The money steps on an authorization — hold, increment, capture, release — exactly once,
across any number of gateway workers and any crash.

Each step runs in three phases (Stripe's "atomic phases"):
1. **Claim** (one transaction): check the rules against the authorization's row, then set
   `op` on it with a compare-and-set that succeeds only if no other step is in flight and the
   status still allows this one. Two workers racing on one hold: one wins, the other is told
   `in_progress` (409, retryable) or finds the finished state.
2. **Call** the processor with the step's fixed processor key, outside any transaction.
3. **Record** (one transaction): the outcome, the money movement and the stored answer
   together, again conditional on the step's key.
A step whose answer was lost (a processor timeout, a killed worker) keeps `op` set. Whoever
finds it next — a retry of the request, another step on the hold, the reconciler — asks the
processor for the payment's status first and records what it says; only a step the processor
shows it never did is called again, with the same processor key.

A step already done is answered from the state: the same capture of a captured hold gets the
same answer, even after its idempotency key has expired.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway import wire
from gateway.amounts import AmountLimits, AmountRefused
from gateway.card_data import CardVault
from gateway.ledger import payouts
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import (
    APPROVED,
    CALLING,
    CAPTURED,
    DECLINED,
    FAILED,
    PENDING,
    UNKNOWN,
    VOIDED,
)
from gateway.ledger.store import AuthorizationRow, Ledger, aware
from gateway.processors import CardRef
from gateway.processors.methods import KIOSK_METHODS, PAYMENT, WEB_METHODS
from gateway.processors.port import (
    Capability,
    ChangeRefused,
    ErrorCode,
    Outcome,
    PaymentState,
    PaymentStatus,
    PaysChange,
    Processor,
    ProcessorError,
    ProcessorUnreachable,
    Result,
)
from gateway.processors.registry import Processors, UnknownProcessor
from terminal.errors import ProtectedDataError
from terminal.money import Money

# Called with the open transaction that records a step's outcome, to store the request's
# answer in it (the idempotency key's answer exists exactly when the effect does).
Store = Callable[[Connection, StoredAnswer], None]
# Called first in a step's first transaction to claim the request's idempotency key there
# (`gateway.ledger.idempotency.RequestKey.claim`): whether the key was resumed. It raises, and
# the transaction writes nothing, when the key is not the request's to work under.
ClaimKey = Callable[[Connection], bool]

NOT_STEP = {
    "op": None,
    "op_key": None,
    "op_amount": None,
    "op_state": None,
    "op_started_at": None,
    "op_detail": None,
}


class Refusal(Exception):
    """A definite refusal, answered with a 4xx. A `transient` one (another step is in flight)
    is not stored for the idempotency key: the retry is worked again."""

    def __init__(self, status: int, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient


class Unanswered(Exception):
    """The processor gave no answer: the outcome is unknown for now (504, retryable)."""


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _amount(minor: int, currency: str) -> dict[str, Any]:
    return {"minor": minor, "currency": currency}


def _destination(row: AuthorizationRow) -> str | None:
    """Where a claimed refund goes (`RefundRequest.destination`), from its step's detail."""
    try:
        detail = json.loads(row.op_detail or "{}")
    except ValueError:
        return None  # a refund claimed before its detail carried a destination
    destination = detail.get("destination") if isinstance(detail, dict) else None
    return str(destination) if destination else None


def receipt_mismatch(receipt: wire.Receipt, captured: Money) -> str | None:
    """Why `receipt` cannot be the receipt of a capture of `captured`, or None: a driver's
    receipt totals exactly what was taken from their card (docs/architecture.md, "The money
    path", 8), its VAT adds up, and its lines add up when they say what they cost."""
    currency = receipt.currency
    if currency != captured.currency:
        return f"receipt currency {currency} differs from the capture's {captured.currency}"
    if receipt.total != captured.minor:
        total = Money(receipt.total, currency)
        return f"receipt total {total} differs from the capture {captured}"
    if receipt.total_excl_vat + sum(v.vat for v in receipt.vat) != receipt.total:
        return "receipt total excl. VAT plus its VAT is not its total"
    gross = [line.incl_vat for line in receipt.lines]
    if gross and None not in gross and sum(g for g in gross if g is not None) != receipt.total:
        return "receipt lines incl. VAT do not add up to its total"
    return None


def _in_progress() -> Refusal:
    return Refusal(
        409, "in_progress", "another step on this authorization is under way", transient=True
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebHold:
    """What `Payments.hold_web` tells the phone's payment page: the authorization's answer as a
    terminal would get it (`status` approved, declined, or `pending` while the processor waits
    for the payer), and for a pending one what the payer needs (`pay`: for Lightning the
    invoice, `bolt11` and `payment_hash`, with the sats, the BTC price and its source)."""

    answer: StoredAnswer
    pay: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A claimed step: the row as it was claimed, where the payment lives, and whether the
    step was found unfinished (then the processor is asked before it is called)."""

    row: AuthorizationRow
    processor: Processor
    key: str
    resume: bool


class Payments:
    """The money steps, over the ledger and the configured processors."""

    def __init__(
        self,
        ledger: Ledger,
        processors: Processors,
        *,
        vault: CardVault | None,
        limits: AmountLimits,
        lock_s: float,
        unverified_cards: bool = False,
    ) -> None:
        self.ledger = ledger
        self.processors = processors
        self.vault = vault
        self.limits = limits
        self.lock = timedelta(seconds=lock_s)
        self.unverified_cards = unverified_cards

    # -- helpers ----------------------------------------------------------------------------
    def _money(self, minor: int, currency: str) -> Money:
        try:
            return self.limits.check(minor, currency)
        except AmountRefused as exc:
            raise Refusal(400, exc.code, str(exc)) from None

    def _stale(self, row: AuthorizationRow) -> bool:
        started = row.op_started_at
        return (
            row.op_state == UNKNOWN
            or started is None
            or aware(started) < self.ledger.clock() - self.lock
        )

    def _take_over(self, conn: Connection, row: AuthorizationRow) -> bool:
        """Make an unfinished step ours (compare-and-set on its lock)."""
        return self.ledger.update_if(
            conn,
            row.id,
            {"op_key": row.op_key, "op_state": row.op_state, "op_started_at": row.op_started_at},
            op_state=CALLING,
            op_started_at=self.ledger.clock(),
        )

    def _status(self, step: Step) -> PaymentStatus | None:
        try:
            return step.processor.status(payment_id=step.row.id, reference=step.row.processor_ref)
        except ProcessorUnreachable:
            return None

    def _mark_unknown(self, authorization_id: str, key: str) -> None:
        with self.ledger.write() as conn:
            self.ledger.update_if(conn, authorization_id, {"op_key": key}, op_state=UNKNOWN)

    # -- answers from the state -------------------------------------------------------------
    @staticmethod
    def authorization_answer(row: AuthorizationRow) -> StoredAnswer:
        if row.status in (APPROVED, CAPTURED) or (
            row.status == VOIDED and row.amount_authorized is not None
        ):
            return StoredAnswer(
                status_code=200,
                body={
                    "authorization_id": row.id,
                    "status": "approved",
                    "amount_authorized": _amount(int(row.amount_authorized), row.currency),
                },
            )
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "declined",
                "decline_reason": row.decline_reason or "declined",
            },
        )

    @staticmethod
    def _captured_answer(row: AuthorizationRow) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "captured",
                "amount_captured": _amount(int(row.amount_captured), row.currency),
            },
        )

    @staticmethod
    def _refunded_answer(row: AuthorizationRow, amount: int) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "refunded",
                "refund": _amount(amount, row.currency),
                "amount_refunded": _amount(int(row.amount_refunded), row.currency),
                "amount_captured": _amount(int(row.amount_captured), row.currency),
            },
        )

    @staticmethod
    def _change_answer(payout: dict[str, Any]) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": payout["authorization_id"],
                "status": "change_paid",
                "change": _amount(int(payout["amount"]), payout["currency"]),
                "sats": int(payout["sats"]),
                "payment_hash": payout["payment_hash"],
                "preimage": payout["preimage"],
            },
        )

    @staticmethod
    def _voided_answer(authorization_id: str) -> StoredAnswer:
        return StoredAnswer(
            status_code=200, body={"authorization_id": authorization_id, "status": "voided"}
        )

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
                    raise _in_progress()
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
                    raise _in_progress()
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
            raise _in_progress()
        return Step(row=row, processor=processor, key=key, resume=False)

    # -- capture, release, increment --------------------------------------------------------
    def capture(
        self, aid: str, req: wire.CaptureRequest, store: Store, *, claim: ClaimKey | None = None
    ) -> StoredAnswer:
        amount = self._money(req.amount.minor, req.amount.currency)
        detail = json.dumps(
            {"energy_wh": req.energy_wh, "receipt": req.receipt.model_dump(mode="json")}
        )

        def check(
            _conn: Connection, row: AuthorizationRow, owner: str | None
        ) -> StoredAnswer | None:
            if row.status == CAPTURED:
                if row.amount_captured == amount.minor and row.receipt_id == req.receipt.receipt_id:
                    return self._captured_answer(row)
                raise Refusal(409, "already_captured", "authorization was captured already")
            if row.status != APPROVED:
                raise Refusal(409, "not_capturable", f"authorization is {row.status}")
            if amount.currency != row.currency:
                raise Refusal(409, "currency_mismatch", "capture currency differs")
            if amount.minor > row.amount_authorized:
                raise Refusal(409, "exceeds_authorization", "capture exceeds the authorization")
            if owner is not None and owner != aid:
                raise Refusal(409, "receipt_id_taken", "receipt id belongs to another session")
            mismatch = receipt_mismatch(req.receipt, amount)
            if mismatch is not None:
                raise Refusal(400, "receipt_mismatch", mismatch)
            return None

        step = self._claim(
            aid,
            "capture",
            f"capture:{aid}",
            amount=lambda _row: amount.minor,
            detail=detail,
            check=check,
            claim=claim,
            receipt_id=req.receipt.receipt_id,
        )
        return self._finish_step(step, store)

    def void(
        self, aid: str, caller: str, reason: str, store: Store, *, claim: ClaimKey | None = None
    ) -> StoredAnswer:
        with self.ledger.write() as conn:
            if claim is not None:
                claim(conn)
            # A reversal that overtook its authorization: a tombstone, so the late
            # authorization is refused and never holds money.
            if self.ledger.insert(
                conn,
                id=aid,
                terminal_id=caller,
                status=VOIDED,
                currency="XXX",
                amount_requested=0,
                card_kind="payment",
                card_token="",
                card_brand="",
                card_last4="",
                void_reason=reason,
            ):
                answer = self._voided_answer(aid)
                store(conn, answer)
                return answer

        def check(
            _conn: Connection, row: AuthorizationRow, _owner: str | None
        ) -> StoredAnswer | None:
            if row.status in (DECLINED, VOIDED, FAILED):
                return self._voided_answer(aid)  # nothing is held
            if row.status != APPROVED:
                raise Refusal(409, "not_voidable", f"authorization is {row.status}")
            return None

        step = self._claim(
            aid,
            "release",
            f"release:{aid}",
            amount=lambda _row: None,
            detail=reason,
            check=check,
            claim=claim,
        )
        return self._finish_step(step, store)

    def increment(
        self,
        aid: str,
        req: wire.IncrementRequest,
        request_key: str,
        store: Store,
        *,
        claim: ClaimKey | None = None,
    ) -> StoredAnswer:
        """Raise an approved hold by `req.amount`, never past the terminal's `ceiling` nor the
        gateway's own. A decline leaves the hold as it was."""
        self._money(req.amount.minor, req.amount.currency)
        ceiling = self._money(req.ceiling.minor, req.ceiling.currency)

        def check(
            _conn: Connection, row: AuthorizationRow, _owner: str | None
        ) -> StoredAnswer | None:
            if row.status != APPROVED:
                raise Refusal(409, "not_incrementable", f"authorization is {row.status}")
            if {req.amount.currency, req.ceiling.currency} != {row.currency}:
                raise Refusal(409, "currency_mismatch", "increment currency differs")
            asked = int(row.amount_authorized) + req.amount.minor
            if asked > ceiling.minor:
                raise Refusal(409, "exceeds_ceiling", "the hold would pass the ceiling")
            if asked > self.limits.ceiling(row.currency):
                raise Refusal(409, "exceeds_ceiling", "the hold would pass the gateway's ceiling")
            processor = self.processors.get(row.processor, row.merchant_account)
            if "increment" not in {c.value for c in processor.capabilities}:
                raise Refusal(409, "increment_unsupported", "the processor cannot increment")
            return None

        def asked(row: AuthorizationRow) -> int:
            return int(row.amount_authorized) + req.amount.minor

        key = f"increment:{aid}:{request_key}"
        step = self._claim(
            aid, "increment", key, amount=asked, detail=None, check=check, claim=claim
        )
        return self._finish_step(step, store)

    def refund(
        self,
        aid: str,
        req: wire.RefundRequest,
        request_key: str,
        store: Store,
        *,
        claim: ClaimKey | None = None,
    ) -> StoredAnswer:
        """Refund part or all of a captured payment through the processor that captured it;
        several refunds may follow one another, never more in all than was captured."""
        amount = self._money(req.amount.minor, req.amount.currency)

        def check(
            _conn: Connection, row: AuthorizationRow, _owner: str | None
        ) -> StoredAnswer | None:
            if row.status != CAPTURED:
                raise Refusal(409, "not_refundable", f"authorization is {row.status}")
            if amount.currency != row.currency:
                raise Refusal(409, "currency_mismatch", "refund currency differs")
            if int(row.amount_refunded) + amount.minor > int(row.amount_captured):
                raise Refusal(409, "exceeds_capture", "refunds would pass what was captured")
            return None

        step = self._claim(
            aid,
            "refund",
            f"refund:{aid}:{request_key}",
            amount=lambda _row: amount.minor,
            # Kept with the step, so a retry or the reconciler sends the refund to the same
            # destination under the same key.
            detail=json.dumps({"reason": req.reason, "destination": req.destination}),
            check=check,
            claim=claim,
        )
        return self._finish_step(step, store)

    def pay_change(self, aid: str, destination: str) -> StoredAnswer:
        """Pay a prepayment's change (what was paid up front and not captured) to the payer's
        invoice `destination`, once. The invoice is checked first and nothing moves if it
        cannot take the change (`Refusal` with the processor adapter's reason: not an
        invoice, wrong network, expired, wrong amount, paid already). The step's key is the
        invoice's payment hash, so the same invoice sent twice pays once; after a crash the
        processor is asked what it paid under that key before anything is paid
        (`PaysChange`). Asked again once paid, the payout is answered."""
        row = self.ledger.fetch(aid)
        if row is None:
            raise Refusal(404, "unknown_authorization", "no such authorization")
        if row.op == "change":
            # A payout left unfinished (a crash, a lost answer): settle it first, by asking the
            # processor what it paid under that step's key, before anything else is paid.
            if not self.resolve(aid):
                raise _in_progress()
            row = self.ledger.fetch(aid)
            assert row is not None
        if not row.processor:  # a tombstone: a void that overtook its hold
            raise Refusal(409, "not_prepaid", "this payment was never made: no change")
        try:
            processor = self.processors.get(row.processor, row.merchant_account)
        except UnknownProcessor:
            raise Unanswered(f"{row.processor}/{row.merchant_account} is not configured") from None
        if Capability.PREPAID not in processor.capabilities:
            raise Refusal(409, "not_prepaid", "this payment was not paid up front: no change")
        if not isinstance(processor, PaysChange):
            raise Refusal(409, "not_prepaid", f"{processor.name} cannot pay change back")
        with self.ledger.engine.connect() as conn:
            owed_minor = payouts.owed(conn, aid)
            paid = payouts.latest(conn, aid, "change")
        if owed_minor <= 0:
            if paid is not None:
                return self._change_answer(paid)
            raise Refusal(409, "nothing_owed", "no change is owed on this payment")
        owed = Money(owed_minor, row.currency)
        try:
            quote = processor.quote_change(
                reference=row.processor_ref, owed=owed, destination=destination
            )
        except ChangeRefused as exc:
            raise Refusal(400, exc.code, exc.message) from None
        except ProcessorUnreachable:
            raise Unanswered("the processor cannot be asked") from None

        def check(
            conn: Connection, _row: AuthorizationRow, _owner: str | None
        ) -> StoredAnswer | None:
            if payouts.owed(conn, aid) != owed.minor:
                raise Refusal(409, "nothing_owed", "the change owed has changed: look again")
            return None

        step = self._claim(
            aid,
            "change",
            f"change:{aid}:{quote.payment_hash}",
            amount=lambda _row: owed.minor,
            # Kept with the step: a retry or the reconciler pays the same invoice, same key.
            detail=json.dumps({"destination": destination}),
            check=check,
        )
        return self._finish_step(step, lambda _conn, _answer: None)

    def _claim(
        self,
        aid: str,
        op: str,
        key: str,
        *,
        amount: Callable[[AuthorizationRow], int | None],
        detail: str | None,
        check: Callable[[Connection, AuthorizationRow, str | None], StoredAnswer | None],
        claim: ClaimKey | None = None,
        receipt_id: str | None = None,
    ) -> Step | StoredAnswer:
        """Phase 1 of a step on an existing authorization: the rules, then the compare-and-set.
        An unfinished step of the same kind and key is resumed; an unfinished step of another
        kind is resolved first (or, while its worker still holds it, answered in_progress).
        `check(conn, row, owner)` gets, with a `receipt_id`, the authorization that receipt id
        belongs to (read with the row, in one statement), else None."""
        for _ in range(3):
            with self.ledger.write() as conn:
                if claim is not None:
                    claim(conn)
                if receipt_id is None:
                    row, owner = self.ledger.get(conn, aid), None
                else:
                    row, owner = self.ledger.get_with_receipt_owner(conn, aid, receipt_id)
                if row is None:
                    raise Refusal(404, "unknown_authorization", "no such authorization")
                if row.op is not None:
                    if not self._stale(row):
                        raise _in_progress()
                    if row.op_key == key:
                        if not self._take_over(conn, row):
                            raise _in_progress()
                        processor = self.processors.get(row.processor, row.merchant_account)
                        return Step(row=row, processor=processor, key=key, resume=True)
                    other = row
                else:
                    other = None
                    if op == "change" and (payout := payouts.of_step(conn, aid, key)):
                        return self._change_answer(payout)
                    done = (
                        self.ledger.moved(conn, aid, key) if op in ("refund", "increment") else None
                    )
                    if done is not None:
                        # Finished by someone other than this request (a processor's
                        # notification, the reconciler) while its key was left unanswered:
                        # the retry gets the outcome, never a second step.
                        if op == "refund":
                            return self._refunded_answer(row, done)
                        return self.authorization_answer(row)
                    answer = check(conn, row, owner)
                    if answer is not None:
                        return answer
                    values: dict[str, Any] = {"op": op, "op_key": key, "op_state": CALLING}
                    values.update(op_started_at=self.ledger.clock(), op_amount=amount(row))
                    values.update(op_detail=detail)
                    claimed = self.ledger.update_row(
                        conn, aid, {"op": None, "status": row.status}, **values
                    )
                    if claimed is not None:
                        processor = self.processors.get(row.processor, row.merchant_account)
                        return Step(row=claimed, processor=processor, key=key, resume=False)
            if other is not None and not self.resolve(aid):
                raise _in_progress()
        raise _in_progress()

    # -- resolution -------------------------------------------------------------------------
    def _learn(self, step: Step) -> Result | None:
        """What the processor's status says about an unfinished step: its outcome if the
        processor shows it, None if the processor shows it was never done (then it is called,
        with the same key). Unanswered if the processor cannot be asked."""
        if step.row.op == "change":
            return self._learn_change(step)
        if step.row.op == "refund" and isinstance(step.processor, PaysChange):
            # A payout to the payer's invoice: the adapter looks it up by the step's key
            # before it pays anything (`refund`), and answers with its proof (`payouts`).
            return None
        status = self._status(step)
        if status is None:
            self._mark_unknown(step.row.id, step.key)
            raise Unanswered("the processor cannot be asked")
        row, state = step.row, status.state
        zero = Money(0, row.currency)
        refused = Result(
            outcome=Outcome.DECLINED,
            amount=zero,
            reference=status.reference,
            error=ProcessorError(code=ErrorCode.ALREADY_SETTLED, message=state.value),
        )
        if state is PaymentState.PENDING:
            return Result(outcome=Outcome.UNKNOWN, amount=zero)
        if row.op == "hold":
            if state is PaymentState.NOT_FOUND:
                return None
            if state is PaymentState.HELD and status.held is not None:
                partial = status.held.minor < row.amount_requested
                return Result(
                    outcome=Outcome.PARTIALLY_APPROVED if partial else Outcome.APPROVED,
                    amount=status.held,
                    reference=status.reference,
                )
            return replace(
                refused, error=ProcessorError(code=ErrorCode.CARD_DECLINED, message=state.value)
            )
        if state is PaymentState.HELD and status.held is not None:
            if row.op == "increment" and status.held.minor >= int(row.op_amount):
                return Result(
                    outcome=Outcome.APPROVED, amount=status.held, reference=status.reference
                )
            return None
        if row.op == "refund":
            wanted = int(row.amount_refunded) + int(row.op_amount)
            if status.refunded is not None and status.refunded.minor >= wanted:
                amount = Money(int(row.op_amount), row.currency)
                return Result(outcome=Outcome.APPROVED, amount=amount, reference=status.reference)
            return None if state is PaymentState.CAPTURED else refused
        if row.op == "capture" and state is PaymentState.CAPTURED and status.captured:
            return Result(
                outcome=Outcome.APPROVED, amount=status.captured, reference=status.reference
            )
        if row.op == "release" and state is PaymentState.RELEASED:
            return Result(outcome=Outcome.APPROVED, amount=zero, reference=status.reference)
        return refused

    def _learn_change(self, step: Step) -> Result | None:
        """What the processor paid under an unfinished change step's key (None: nothing,
        so it is paid now, under the same key)."""
        payer = step.processor
        assert isinstance(payer, PaysChange), payer
        try:
            return payer.change_status(key=step.key, reference=step.row.processor_ref)
        except ProcessorUnreachable:
            self._mark_unknown(step.row.id, step.key)
            raise Unanswered("the processor cannot be asked") from None

    def resolve(self, aid: str) -> bool:
        """Finish an unfinished step found by someone other than its request (another step,
        the reconciler): ask the processor, record what it shows, and carry on a capture,
        release or increment it shows was never done. A hold it never placed is `failed` (no
        card data is at hand to place it). Whether the step is finished now."""
        with self.ledger.write() as conn:
            row = self.ledger.get(conn, aid)
            if row is None or row.op is None:
                return True
            if not self._stale(row) or not self._take_over(conn, row):
                return False
        step = Step(
            row=row,
            processor=self.processors.get(row.processor, row.merchant_account),
            key=row.op_key,
            resume=True,
        )
        try:
            result = self._learn(step)
        except Unanswered:
            return False
        if result is None:
            if row.op == "hold":
                result = Result(
                    outcome=Outcome.DECLINED,
                    amount=Money(0, row.currency),
                    error=ProcessorError(code=ErrorCode.NOT_FOUND, message="not_placed"),
                )
            else:
                result = self._send(step)
        try:
            self._record(step, result, lambda _conn, _answer: None)
        except (Unanswered, Refusal):
            return False
        return True

    def finish_from_notice(
        self, aid: str, outcome: Callable[[AuthorizationRow], Result | None]
    ) -> str:
        """Finish the open step of `aid` with what a processor's verified notification says
        (`outcome` maps the step's row to the step's result, None when the notification is
        not about that step): "settled"; "noted" when no step it concerns is open; "busy"
        while a worker is still calling the processor for it (the processor retries later)."""
        with self.ledger.write() as conn:
            row = self.ledger.get(conn, aid)
            if row is None or row.op is None:
                return "noted"
            result = outcome(row)
            if result is None:
                return "noted"
            if not self._stale(row) or not self._take_over(conn, row):
                return "busy"
        step = Step(
            row=row,
            processor=self.processors.get(row.processor, row.merchant_account),
            key=row.op_key,
            resume=True,
        )
        try:
            self._record(step, result, lambda _conn, _answer: None)
        except (Unanswered, Refusal):
            return "busy"
        return "settled"

    # -- phases 2 and 3 ---------------------------------------------------------------------
    def _finish_step(self, step: Step | StoredAnswer, store: Store) -> StoredAnswer:
        """Phases 2 and 3 of a step on an existing authorization, once `_claim` has run: a
        step found unfinished asks the processor first and is sent (with its key) only if the
        processor shows it was never done; then its outcome is recorded and answered."""
        if isinstance(step, StoredAnswer):
            return step
        result = self._learn(step) if step.resume else None
        if result is None:
            result = self._send(step)
        return self._record(step, result, store)

    def _send(self, step: Step) -> Result:
        """Call the processor for a capture, release, refund or increment, from what its claim
        recorded on the row (the amount in `op_amount`, the hold in `amount_authorized`), so
        a first call, a retry and the reconciler send the same request under the same key."""
        row, reference = step.row, step.row.processor_ref
        if row.op == "release":
            held = Money(int(row.amount_authorized), row.currency)
            return step.processor.release(key=step.key, reference=reference, amount=held)
        amount = Money(int(row.op_amount), row.currency)
        if row.op == "capture":
            return step.processor.capture(key=step.key, reference=reference, amount=amount)
        if row.op == "refund":
            return step.processor.refund(
                key=step.key, reference=reference, amount=amount, destination=_destination(row)
            )
        if row.op == "change":
            payer = step.processor
            assert isinstance(payer, PaysChange), payer
            return payer.pay_change(
                key=step.key, reference=reference, owed=amount, destination=_destination(row) or ""
            )
        assert row.op == "increment", row.op
        return step.processor.increment(key=step.key, reference=reference, amount=amount)

    # -- phase 3 ----------------------------------------------------------------------------
    def _record(self, step: Step, result: Result, store: Store) -> StoredAnswer:
        _row, aid = step.row, step.row.id
        if result.outcome in (Outcome.UNKNOWN, Outcome.PENDING):
            self._mark_unknown(aid, step.key)
            raise Unanswered("the processor did not answer")
        # Recording refuses nothing (a step no longer ours is answered from the state), so
        # its unit needs no savepoint: only a broken database makes it raise.
        with self.ledger.write(savepoint=False) as conn:
            answer = self._apply(conn, step, result)
            if answer is None:  # someone else finished the step meanwhile: answer the state
                current = self.ledger.get(conn, aid)
                assert current is not None
                answer = self._answer_for(conn, step, current)
            store(conn, answer)
        return answer

    def _answer_for(self, conn: Connection, step: Step, row: AuthorizationRow) -> StoredAnswer:
        op = step.row.op
        if op == "change" and (payout := payouts.of_step(conn, row.id, step.key)):
            return self._change_answer(payout)
        if op in {"hold", "increment"}:
            return self.authorization_answer(row)
        if op == "capture" and row.status == CAPTURED:
            return self._captured_answer(row)
        if op == "release" and row.status in (VOIDED, DECLINED, FAILED):
            return self._voided_answer(row.id)
        if op == "refund" and row.op is None:
            return self._refunded_answer(row, int(step.row.op_amount))
        return StoredAnswer(
            status_code=409, body=error_body("in_progress", f"authorization is {row.status}")
        )

    def _apply(self, conn: Connection, step: Step, result: Result) -> StoredAnswer | None:
        """Record the outcome of the step (conditional on its key); None if it was not ours
        any more."""
        row, aid, key = step.row, step.row.id, step.key
        ok = result.succeeded
        where = {"op_key": key}
        reason = result.error.code.value if result.error is not None else "declined"
        if row.op == "hold":
            held = min(result.amount.minor, int(row.amount_requested)) if ok else 0
            approved = ok and held > 0
            current = self.ledger.update_row(
                conn,
                aid,
                where,
                status=APPROVED if approved else (FAILED if reason == "not_found" else DECLINED),
                amount_authorized=held if approved else None,
                processor_ref=result.reference or None,
                decline_reason=None if approved else reason,
                **NOT_STEP,
            )
            if current is None:
                return None
            if approved:
                self.ledger.move(conn, aid, "hold", held, row.currency, step_key=key)
            return self.authorization_answer(current)
        if row.op == "capture":
            if not ok:
                if not self.ledger.update_if(conn, aid, where, flag="capture_refused", **NOT_STEP):
                    return None
                return StoredAnswer(
                    status_code=409,
                    body=error_body("capture_refused", f"the processor refused: {reason}"),
                )
            detail = json.loads(row.op_detail)
            receipt = detail["receipt"]
            amount = int(row.op_amount)
            current = self.ledger.update_row(
                conn,
                aid,
                where,
                status=CAPTURED,
                amount_captured=amount,
                energy_wh=detail["energy_wh"],
                receipt_id=receipt["receipt_id"],
                receipt=json.dumps(receipt),
                **NOT_STEP,
            )
            if current is None:
                return None
            vat = int(receipt["total"]) - int(receipt["total_excl_vat"])
            self.ledger.move_revenue(conn, row, "capture", amount, step_key=key, vat=vat)
            self._owe_change(conn, step, int(row.amount_authorized) - amount)
            return self._captured_answer(current)
        if row.op == "release":
            if not ok:
                if not self.ledger.update_if(conn, aid, where, flag="release_refused", **NOT_STEP):
                    return None
                return StoredAnswer(
                    status_code=409,
                    body=error_body("release_refused", f"the processor refused: {reason}"),
                )
            if not self.ledger.update_if(
                conn, aid, where, status=VOIDED, void_reason=row.op_detail, **NOT_STEP
            ):
                return None
            self.ledger.move(
                conn, aid, "release", int(row.amount_authorized), row.currency, step_key=key
            )
            self._owe_change(conn, step, int(row.amount_authorized))
            return self._voided_answer(aid)
        if row.op == "refund":
            if not ok:
                if not self.ledger.update_if(conn, aid, where, **NOT_STEP):
                    return None
                return StoredAnswer(
                    status_code=409,
                    body=error_body("refund_refused", f"the processor refused: {reason}"),
                )
            amount = int(row.op_amount)
            total = int(row.amount_refunded) + amount
            current = self.ledger.update_row(conn, aid, where, amount_refunded=total, **NOT_STEP)
            if current is None:
                return None
            at = self.ledger.move_revenue(conn, row, "refund", amount, step_key=key, vat=0)
            if result.raw.get("payout_hash"):  # paid to the payer's invoice: keep the proof
                payouts.record(
                    conn,
                    authorization_id=aid,
                    step_key=key,
                    kind="refund",
                    amount=amount,
                    currency=row.currency,
                    raw=result.raw,
                    at=at,
                )
            return self._refunded_answer(current, amount)
        if row.op == "change":
            if not self.ledger.update_if(conn, aid, where, **NOT_STEP):
                return None
            if not ok:
                why = result.error.message if result.error is not None else "refused"
                return StoredAnswer(
                    status_code=409,
                    body=error_body("change_refused", f"the change was not paid: {why}"),
                )
            amount = int(row.op_amount)
            at = self.ledger.move(conn, aid, payouts.PAID, amount, row.currency, step_key=key)
            payout = payouts.record(
                conn,
                authorization_id=aid,
                step_key=key,
                kind="change",
                amount=amount,
                currency=row.currency,
                raw=result.raw,
                at=at,
            )
            return self._change_answer(payout)
        # increment: never more than asked, never less than already held
        before = int(row.amount_authorized)
        total = min(max(result.amount.minor, before), int(row.op_amount)) if ok else before
        current = self.ledger.update_row(conn, aid, where, amount_authorized=total, **NOT_STEP)
        if current is None:
            return None
        if total > before:
            self.ledger.move(conn, aid, "increment", total - before, row.currency, step_key=key)
            return self.authorization_answer(current)
        return StoredAnswer(
            status_code=200,
            body={"authorization_id": aid, "status": "declined", "decline_reason": reason},
        )

    def _owe_change(self, conn: Connection, step: Step, minor: int) -> None:
        """A prepayment captured for less, or released: the rest is owed back to the payer
        (`gateway.ledger.payouts`), recorded in the same transaction."""
        if minor > 0 and Capability.PREPAID in step.processor.capabilities:
            row = step.row
            self.ledger.move(conn, row.id, payouts.OWED, minor, row.currency, step_key=step.key)

    # -- the reconciler's view --------------------------------------------------------------
    def unsettled(self, hold_grace: timedelta) -> list[sa.Row[Any]]:
        """Steps with no answer, or whose worker is gone. An unanswered hold is left to its
        terminal's retries for `hold_grace` (they can place it with the card data; the
        reconciler cannot)."""
        now = self.ledger.clock()
        return [
            row
            for row in self.ledger.unsettled_steps(now - self.lock)
            if row.op != "hold"
            or row.op_started_at is None
            or aware(row.op_started_at) < now - hold_grace
        ]
