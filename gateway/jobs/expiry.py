"""The background job that forgets old idempotency keys.

A key is kept at least 24 h (`ledger.IDEMPOTENCY_RETENTION`, 48 h) so a terminal that retries
after a day offline still gets the first answer replayed; after that the row only costs space,
and a retried capture or void is answered from the authorization's state.
"""

from __future__ import annotations

import logging

from gateway.jobs.runner import Job
from gateway.ledger import Ledger

log = logging.getLogger("ev_gateway.expiry")

EXPIRE_EVERY_S = 3600.0  # hourly: a key lives between 48 h and 49 h


class KeyExpiry(Job):
    """Runs `Ledger.expire_keys` every `every_s` seconds, in one worker at a time."""

    name = "key-expiry"

    def __init__(self, ledger: Ledger, every_s: float = EXPIRE_EVERY_S) -> None:
        super().__init__(ledger, every_s)

    def work(self) -> int:
        expired = self.ledger.expire_keys()
        if expired:
            log.info("event=idempotency_keys_expired count=%d", expired)
        return expired
