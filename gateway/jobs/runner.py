"""Background jobs, run in every gateway worker and coordinated through the database.

Each job round first wins the job's lease in `job_leases` (a conditional update), so with N
workers one of them runs a round; a worker that dies loses its lease when it runs out, and
another takes over. The work itself is written to be safe even if two rounds overlap (the
reconciler resolves each step with a compare-and-set), so the lease saves work, not money.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid

from gateway.ledger import Ledger

log = logging.getLogger("ev_gateway.jobs")

HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Job:
    """A periodic job: `work` every `every_s` seconds, where this worker wins the lease.
    `runs` counts finished rounds; `ran` is set after each, for a caller that waits."""

    name = "job"

    def __init__(self, ledger: Ledger, every_s: float) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.ledger = ledger
        self.every_s = every_s
        self.runs = 0
        self.ran = threading.Event()

    def work(self) -> object:
        raise NotImplementedError

    def run_once(self) -> object:
        """One round, whether or not another worker ran one just now."""
        result = self.work()
        self.runs += 1
        self.ran.set()
        return result

    def round(self) -> None:
        # The lease runs a little shorter than the period, so the next round may take it.
        if self.ledger.take_lease(self.name, HOLDER, self.every_s * 0.9):
            self.run_once()

    async def run_forever(self) -> None:
        """A round, then sleep; a failed round is logged and retried next time."""
        while True:
            try:
                await asyncio.to_thread(self.round)
            except Exception:
                log.exception("event=job_failed job=%s", self.name)
            await asyncio.sleep(self.every_s)
