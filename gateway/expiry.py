"""The gateway's background task that forgets old idempotency keys.

A key is kept at least 24 h (`ledger.IDEMPOTENCY_RETENTION`, 48 h) so a terminal that retries
after a day offline still gets the first answer replayed; after that the row only costs space.
The task runs once at start-up and then every `every_s` seconds, inside the app's lifespan, so
every way of serving the app (`serve`, the embedded gateway) runs it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from gateway.ledger import Ledger

log = logging.getLogger("ev_gateway.expiry")

EXPIRE_EVERY_S = 3600.0  # hourly: a key lives between 48 h and 49 h


class KeyExpiry:
    """Runs `Ledger.expire_keys` periodically. `runs` counts finished rounds; `ran` is set
    after each, for a caller that waits for the next round."""

    def __init__(self, ledger: Ledger, every_s: float = EXPIRE_EVERY_S) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.ledger = ledger
        self.every_s = every_s
        self.runs = 0
        self.ran = threading.Event()

    def run_once(self) -> int:
        expired = self.ledger.expire_keys()
        self.runs += 1
        self.ran.set()
        if expired:
            log.info("event=idempotency_keys_expired count=%d", expired)
        return expired

    async def run_forever(self) -> None:
        """Expire, then sleep; a failed round is logged and retried next time."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("event=idempotency_expiry_failed")
            await asyncio.sleep(self.every_s)
