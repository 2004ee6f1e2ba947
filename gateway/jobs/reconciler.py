"""The reconciler: resolves money steps whose outcome is unknown, flags holds nobody settled,
and compares the ledger with what the processors say.

It runs in every worker (a lease picks one per round, `gateway.jobs.runner`) and is safe to
run in all of them at once: each step is taken over with a compare-and-set before the
processor is asked (`Payments.resolve`). `ev-terminal gateway reconcile` runs one round with
the processor comparison and prints the report; it exits non-zero when something needs an
operator.

- **unknown**: a step with no answer (a processor timeout, a killed worker). An unanswered
  hold is left to its terminal's retries for `hold_grace` first (they carry the card data to
  place it; the reconciler cannot), then resolved: placed → approved (the terminal's void or
  capture follows), never placed → failed.
- **stale**: an approved hold older than `stale_after` that no capture or void has reached.
  Not released automatically: its kiosk may be offline with the capture queued.
- **mismatched**: the processor disagrees with the ledger, or refused a capture or release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gateway.jobs.runner import Job
from gateway.payments import Payments
from gateway.processors.port import PaymentState, ProcessorUnreachable

log = logging.getLogger("ev_gateway.reconciler")

RECONCILE_EVERY_S = 10.0
HOLD_GRACE = timedelta(minutes=2)  # well past a terminal's authorization timeout (20 s)
STALE_AFTER = timedelta(days=7)  # card holds lapse after about 7 days at most schemes


def _brief(row: Any) -> dict[str, Any]:
    return {
        "authorization_id": row.id,
        "terminal_id": row.terminal_id,
        "status": row.status,
        "step": row.op,
        "amount_authorized": row.amount_authorized,
        "currency": row.currency,
        "processor": f"{row.processor}/{row.merchant_account}",
        "flag": row.flag,
        "created_at": str(row.created_at),
    }


@dataclass
class Report:
    resolved: int = 0
    open: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)

    @property
    def needs_operator(self) -> bool:
        return bool(self.unknown or self.stale or self.mismatched)


class Reconciler(Job):
    name = "reconciler"

    def __init__(
        self,
        payments: Payments,
        every_s: float = RECONCILE_EVERY_S,
        *,
        hold_grace: timedelta = HOLD_GRACE,
        stale_after: timedelta = STALE_AFTER,
    ) -> None:
        super().__init__(payments.ledger, every_s)
        self.payments = payments
        self.hold_grace = hold_grace
        self.stale_after = stale_after

    def work(self) -> int:
        """Resolve what can be resolved and flag stale holds; how many steps were resolved."""
        resolved = 0
        for row in self.payments.unsettled(self.hold_grace):
            if self.payments.resolve(row.id):
                resolved += 1
                log.info("event=step_resolved authorization=%s step=%s", row.id, row.op)
        stale = self.ledger.flag_stale(self.ledger.clock() - self.stale_after)
        if stale:
            log.warning("event=stale_holds count=%d", stale)
        return resolved

    def report(self, *, ask_processors: bool = True) -> Report:
        """One round, then the state of every open hold (asking its processor if told)."""
        report = Report(resolved=self.work())
        self.runs += 1
        for row in self.ledger.unsettled_steps(self.ledger.clock()):
            report.unknown.append(_brief(row))
        for row in self.ledger.open_holds():
            report.open.append(_brief(row))
            if not ask_processors or row.op is not None:
                continue
            processor = self.payments.processors.get(row.processor, row.merchant_account)
            try:
                status = processor.status(payment_id=row.id, reference=row.processor_ref)
            except ProcessorUnreachable:
                report.unknown.append(_brief(row))
                continue
            held = status.held.minor if status.held is not None else None
            if status.state is not PaymentState.HELD or held != row.amount_authorized:
                entry = _brief(row)
                entry["processor_says"] = f"{status.state.value} {held}"
                report.mismatched.append(entry)
        for row in self.ledger.flagged():
            (report.stale if row.flag == "stale" else report.mismatched).append(_brief(row))
        return report
