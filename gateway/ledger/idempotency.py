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
        """Claim the key in a transaction of its own."""
        with self.ledger.write() as conn:
            return self.claim_in(conn, ref, endpoint, digest, self.ledger.clock())

    def claim_in(
        self, conn: Connection, ref: KeyRef, endpoint: str, digest: str, stamp: datetime
    ) -> Claim:
        """Claim the key in `conn`'s transaction, with `stamp` as its lock. A key this same
        request (the same `stamp`) claimed before is found NEW again: still its own."""
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
        locked = None if row.locked_at is None else aware(row.locked_at)
        if locked == stamp:
            return Claim(outcome=Claimed.NEW)
        if locked is not None and locked > stamp - self.lock:
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

    def release(self, ref: KeyRef, stamp: datetime) -> None:
        """Unlock a started key whose request got no answer, so its retry resumes at once;
        only while the lock is still `stamp` (the request's own: a claim that was rolled back
        left nothing of ours to release)."""
        with self.ledger.write() as conn:
            values = {"_caller": ref.caller, "_key": ref.key, "_started": STARTED}
            _RELEASE.execute(conn, {**values, "_stamp": stamp, "locked_at": None})


class KeyTaken(Exception):
    """The request's key is not its own to work under (answered before, in progress, or
    used for another request); `claim` says which."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(claim.outcome.value)
        self.claim = claim


class RequestKey:
    """One request's idempotency key. The request's work claims it in the transaction of its
    own first write (`claim`), so claiming costs no transaction of its own, and stores its
    answer in the transaction that records the effect (`store`). The lock stamp is fixed
    when the request starts: a claim found again is recognised as the request's own."""

    def __init__(self, keys: IdempotencyKeys, ref: KeyRef, endpoint: str, digest: str) -> None:
        self.keys = keys
        self.ref = ref
        self.endpoint = endpoint
        self.digest = digest
        self.stamp = keys.ledger.clock()
        self.claimed: Claim | None = None
        self.stored: StoredAnswer | None = None

    def claim(self, conn: Connection) -> bool:
        """Claim the key in `conn`'s transaction (once: later calls answer from the first);
        whether it was resumed (left started by an earlier attempt). KeyTaken if it is not
        this request's to work under; the caller's transaction has written nothing then."""
        if self.claimed is None:
            self.claimed = self.keys.claim_in(
                conn, self.ref, self.endpoint, self.digest, self.stamp
            )
        outcome = self.claimed.outcome
        if outcome is not Claimed.NEW and outcome is not Claimed.RESUMED:
            raise KeyTaken(self.claimed)
        return outcome is Claimed.RESUMED

    @property
    def resumed(self) -> bool:
        return self.claimed is not None and self.claimed.outcome is Claimed.RESUMED

    def forget(self) -> None:
        """The transaction that claimed the key may have been rolled back: claim again."""
        self.claimed = None

    def store(self, conn: Connection, answer: StoredAnswer) -> None:
        """Record the answer, in the caller's transaction (the one that records the effect)."""
        self.keys.store(conn, self.ref, answer)
        self.stored = answer

    def release(self) -> None:
        self.keys.release(self.ref, self.stamp)


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
    sa.update(idempotency).where(
        *_THIS_KEY,
        idempotency.c.state == sa.bindparam("_started"),
        idempotency.c.locked_at == sa.bindparam("_stamp", type_=idempotency.c.locked_at.type),
    ),
    keys=("locked_at",),
)


def _same_lock(locked_at: datetime | None) -> Any:
    col = idempotency.c.locked_at
    return col.is_(None) if locked_at is None else col == locked_at
