"""What the processor shows of a step left unfinished (its answer lost, its worker killed):
the step's outcome if the processor did it, None if it never did (then the step is sent again,
under the same key). Asked before anything is sent again (`Recording._finish_step`,
`Recording.resolve`)."""

from __future__ import annotations

from dataclasses import replace

from gateway.payments.answers import Unanswered
from gateway.payments.core import PaymentsCore, Step
from gateway.processors.port import (
    ErrorCode,
    Outcome,
    PaymentState,
    PaysChange,
    ProcessorError,
    ProcessorUnreachable,
    Result,
)
from terminal.money import Money


class Learning(PaymentsCore):
    """What an unfinished step's processor says it did."""

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
