"""Idempotency keys, as the best payment APIs keep them (Stripe's semantics; Brandur Leach,
"Implementing Stripe-like Idempotency Keys in Postgres"), across any number of workers.

1. `claim` inserts the key atomically (`INSERT … ON CONFLICT DO NOTHING`) with `state` =
   started and a lock stamp. The winner does the work; a concurrent request with the same key
   finds it started and locked and is answered 409 `in_progress`; the same key with another
   body is 422. A key left started by a crashed worker, or by a call whose outcome was
   unknown, is taken over once its lock is stale or released: the work is then resumed from
   the authorization's state, which asks the processor before doing anything again.
2. The answer is stored with `state` = done in the transaction that records the work's
   outcome (`store`), so an answer exists exactly when its effect does.
3. An unanswered request (the processor gave no answer, a step of another request is in
   flight) stores nothing; `release` unlocks the key so the retry resumes at once.
Keys are scoped to the caller (the terminal's certificate identity), so one terminal can
neither read nor block another's.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ledger.schema import idempotency
from gateway.ledger.statements import Statement, columns
from gateway.ledger.store import Ledger, aware, insert_new

STARTED = "started"
DONE = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAnswer:
    status_code: int
    body: dict[str, Any]


class Claimed(enum.Enum):
    NEW = "new"  # ours: do the work
    RESUMED = "resumed"  # ours, left started before: resume from the recorded state
    DONE = "done"  # answered before: replay
    IN_PROGRESS = "in_progress"  # another request with this key is working now
    MISMATCH = "mismatch"  # the key was used for another request


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    outcome: Claimed
    answer: StoredAnswer | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRef:
    caller: str
    key: str


class IdempotencyKeys:
    """Claims, answers and releases keys in the ledger's database. `lock_s` is how long a
    started key stays locked to the worker that claimed it (longer than a processor call)."""

    def __init__(self, ledger: Ledger, lock_s: float) -> None:
        self.ledger = ledger
        self.lock = timedelta(seconds=lock_s)

    def claim(self, ref: KeyRef, endpoint: str, digest: str) -> Claim:
        stamp = self.ledger.clock()
        with self.ledger.write() as conn:
            if insert_new(
                conn,
                idempotency,
                caller=ref.caller,
                key=ref.key,
                endpoint=endpoint,
                body_sha256=digest,
                state=STARTED,
                locked_at=stamp,
                created_at=stamp,
            ):
                return Claim(outcome=Claimed.NEW)
            row = _SELECT.first(conn, {"_caller": ref.caller, "_key": ref.key})
            if row is None:  # expired between the insert and the select: treat as taken
                return Claim(outcome=Claimed.IN_PROGRESS)
            if row.endpoint != endpoint or row.body_sha256 != digest:
                return Claim(outcome=Claimed.MISMATCH)
            if row.state == DONE:
                return Claim(
                    outcome=Claimed.DONE,
                    answer=StoredAnswer(
                        status_code=int(row.status_code), body=json.loads(row.response)
                    ),
                )
            if row.locked_at is not None and aware(row.locked_at) > stamp - self.lock:
                return Claim(outcome=Claimed.IN_PROGRESS)
            taken = conn.execute(
                sa.update(idempotency)
                .where(
                    idempotency.c.caller == ref.caller,
                    idempotency.c.key == ref.key,
                    idempotency.c.state == STARTED,
                    _same_lock(row.locked_at),
                )
                .values(locked_at=stamp)
            )
            if taken.rowcount != 1:
                return Claim(outcome=Claimed.IN_PROGRESS)
            return Claim(outcome=Claimed.RESUMED)

    def store(self, conn: Connection, ref: KeyRef, answer: StoredAnswer) -> None:
        """Record the answer, in the caller's transaction (the one that records the effect)."""
        _STORE.execute(
            conn,
            {
                "_caller": ref.caller,
                "_key": ref.key,
                "state": DONE,
                "locked_at": None,
                "status_code": answer.status_code,
                "response": json.dumps(answer.body),
            },
        )

    def release(self, ref: KeyRef) -> None:
        """Unlock a started key whose request got no answer, so its retry resumes at once."""
        with self.ledger.write() as conn:
            _RELEASE.execute(
                conn,
                {"_caller": ref.caller, "_key": ref.key, "_started": STARTED, "locked_at": None},
            )


# Run on the driver's cursor (`gateway.ledger.statements`), given their values at execution.
_THIS_KEY = (
    idempotency.c.caller == sa.bindparam("_caller"),
    idempotency.c.key == sa.bindparam("_key"),
)
_SELECT = Statement(
    sa.select(idempotency).where(*_THIS_KEY), returns=columns(idempotency), name="Key"
)
_STORE = Statement(
    sa.update(idempotency).where(*_THIS_KEY),
    keys=("state", "locked_at", "status_code", "response"),
)
_RELEASE = Statement(
    sa.update(idempotency).where(*_THIS_KEY, idempotency.c.state == sa.bindparam("_started")),
    keys=("locked_at",),
)


def _same_lock(locked_at: datetime | None) -> Any:
    col = idempotency.c.locked_at
    return col.is_(None) if locked_at is None else col == locked_at
