"""Rate limits on sign-in, shared by every worker through the database.

Attempts are counted per key (the client's address, the username tried) in fixed windows; a
key over its limit is refused (429) until the window ends, before any password is checked, so a
guesser cannot spend the server's argon2 time either. This is on top of the per-account lock-out
(`gateway.web.operator_auth`), which stops a slow guesser spread over many addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.store import insert_new
from gateway.ledger.web_schema import sign_in_attempts


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    attempts: int
    window: timedelta


# OWASP's authentication cheat sheet asks for a limit without naming one; these let a person who
# mistypes a few times through and stop a script within seconds.
PER_ADDRESS = Limit(attempts=20, window=timedelta(minutes=10))
PER_ACCOUNT = Limit(attempts=10, window=timedelta(minutes=10))


class Throttle:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def allow(self, key: str, limit: Limit) -> bool:
        """Count one attempt for `key`; whether it is within `limit` (the attempt over the
        limit is counted too, so hammering does not reset anything)."""
        stamp = self.clock()
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        span = limit.window.total_seconds()
        start = epoch + timedelta(seconds=(stamp - epoch).total_seconds() // span * span)
        with self.engine.begin() as conn:
            if not insert_new(conn, sign_in_attempts, key=key, window_start=start, count=1):
                conn.execute(
                    sa.update(sign_in_attempts)
                    .where(sign_in_attempts.c.key == key, sign_in_attempts.c.window_start == start)
                    .values(count=sign_in_attempts.c.count + 1)
                )
            count = conn.execute(
                sa.select(sign_in_attempts.c.count).where(
                    sign_in_attempts.c.key == key, sign_in_attempts.c.window_start == start
                )
            ).scalar_one()
            # Windows that ended are of no further use.
            conn.execute(
                sa.delete(sign_in_attempts).where(
                    sign_in_attempts.c.window_start < start - limit.window
                )
            )
        return int(count) <= limit.attempts
