"""The steps on an existing hold: capture, void (release), increment, refund and a
prepayment's change, each claimed on the authorization's row (`_claim`, phase 1) and then
finished by `Recording._finish_step`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from gateway import wire
from gateway.ledger import payouts
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import APPROVED, CALLING, CAPTURED, DECLINED, FAILED, VOIDED
from gateway.ledger.store import AuthorizationRow
from gateway.payments.answers import Refusal, Unanswered, in_progress
from gateway.payments.core import ClaimKey, Step, Store
from gateway.payments.recording import Recording
from gateway.processors.port import Capability, ChangeRefused, PaysChange, ProcessorUnreachable
from gateway.processors.registry import UnknownProcessor
from terminal.money import Money


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


class HoldSteps(Recording):
    """Capture, release, increment, refund and change on a hold that exists."""

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
                raise in_progress()
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
                        raise in_progress()
                    if row.op_key == key:
                        if not self._take_over(conn, row):
                            raise in_progress()
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
                raise in_progress()
        raise in_progress()
