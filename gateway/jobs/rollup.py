"""The background job that keeps the revenue rollup up to date (`gateway.ledger.rollup_pending`).

A report rolls up what is pending before it reads, so the job is not what makes revenue real
time: it keeps each roll-up small (a second's movements, not a day's when the console is
opened next) and the index of unrolled movements short.
"""

from __future__ import annotations

from gateway.jobs.runner import Job
from gateway.ledger import Ledger
from gateway.ledger.rollup_pending import ROLL_UP_EVERY_S, catch_up


class RevenueRollup(Job):
    """Runs `catch_up` every `every_s` seconds, in one worker at a time."""

    name = "revenue-rollup"

    def __init__(self, ledger: Ledger, every_s: float = ROLL_UP_EVERY_S) -> None:
        super().__init__(ledger, every_s)

    def work(self) -> int:
        return catch_up(self.ledger.engine)
