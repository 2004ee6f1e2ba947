"""Phases 2 and 3 of a money step (call the processor, record the outcome with its money
movement and stored answer), and the resolution of a step left unfinished: the processor is
asked what it did (`learning.py`) before anything is sent again (`resolve`,
`finish_from_notice`, and the reconciler's view, `unsettled`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ledger import payouts
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import APPROVED, CAPTURED, DECLINED, FAILED, VOIDED
from gateway.ledger.store import AuthorizationRow, aware
from gateway.payments.answers import Refusal, Unanswered, error_body
from gateway.payments.core import Step, Store
from gateway.payments.learning import Learning
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaysChange,
    ProcessorError,
    Result,
)
from terminal.money import Money

NOT_STEP = {
    "op": None,
    "op_key": None,
    "op_amount": None,
    "op_state": None,
    "op_started_at": None,
    "op_detail": None,
}


def _destination(row: AuthorizationRow) -> str | None:
    """Where a claimed refund goes (`RefundRequest.destination`), from its step's detail."""
    try:
        detail = json.loads(row.op_detail or "{}")
    except ValueError:
        return None  # a refund claimed before its detail carried a destination
    destination = detail.get("destination") if isinstance(detail, dict) else None
    return str(destination) if destination else None


class Recording(Learning):
    """How a claimed step is finished: learned, sent, recorded, answered."""

    # -- resolution -------------------------------------------------------------------------
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
            # The revenue rollup takes it from the movement (`gateway.ledger.rollup_pending`).
            self.ledger.move(conn, aid, "capture", amount, row.currency, step_key=key)
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
            at = self.ledger.move(conn, aid, "refund", amount, row.currency, step_key=key)
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
