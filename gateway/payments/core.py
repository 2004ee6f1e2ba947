"""What every phase of a money step shares: the claimed `Step`, the callbacks that tie a step
to its request's idempotency key (`Store`, `ClaimKey`), and the lock a step holds on the
authorization's row (`op`, `op_state`, `op_started_at`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Connection

from gateway.amounts import AmountLimits, AmountRefused
from gateway.card_data import CardVault
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import CALLING, UNKNOWN
from gateway.ledger.store import AuthorizationRow, Ledger, aware
from gateway.payments.answers import Answers, Refusal
from gateway.processors.port import PaymentStatus, Processor, ProcessorUnreachable
from gateway.processors.registry import Processors
from terminal.money import Money

# Called with the open transaction that records a step's outcome, to store the request's
# answer in it (the idempotency key's answer exists exactly when the effect does).
Store = Callable[[Connection, StoredAnswer], None]
# Called first in a step's first transaction to claim the request's idempotency key there
# (`gateway.ledger.idempotency.RequestKey.claim`): whether the key was resumed. It raises, and
# the transaction writes nothing, when the key is not the request's to work under.
ClaimKey = Callable[[Connection], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A claimed step: the row as it was claimed, where the payment lives, and whether the
    step was found unfinished (then the processor is asked before it is called)."""

    row: AuthorizationRow
    processor: Processor
    key: str
    resume: bool


class PaymentsCore(Answers):
    """The ledger, the configured processors and the limits every step works with, and the
    lock on an authorization's row."""

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
