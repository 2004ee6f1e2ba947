"""The operators' rows and the audit log (`gateway.ledger.web_schema`).

Every change an operator makes is written to the audit log in the same transaction as the
change itself (`Operators.audit` takes the caller's connection), so the log cannot miss one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.store import aware, insert_new
from gateway.ledger.web_schema import ROLES, audit_log, operators

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    id: int
    username: str
    role: str
    password_hash: str
    totp_secret: str | None
    failed_attempts: int
    locked_until: datetime | None


def _operator(row: Any) -> Operator:
    return Operator(
        id=int(row.id),
        username=row.username,
        role=row.role,
        password_hash=row.password_hash,
        totp_secret=row.totp_secret,
        failed_attempts=int(row.failed_attempts),
        locked_until=aware(row.locked_until) if row.locked_until is not None else None,
    )


class Operators:
    """Operator accounts and the audit log. `clock` stamps rows."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        *,
        actor: str,
        totp_secret: str | None = None,
    ) -> bool:
        """A new operator (audited); False if the username is taken (nothing changed)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r}")
        with self.engine.begin() as conn:
            if not insert_new(
                conn,
                operators,
                username=username,
                password_hash=password_hash,
                role=role,
                totp_secret=totp_secret,
                failed_attempts=0,
                created_at=self.clock(),
            ):
                return False
            self.audit(
                conn, actor, "operator.add", username, {"role": role, "totp": bool(totp_secret)}
            )
            return True

    def by_name(self, username: str) -> Operator | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(operators).where(operators.c.username == username)).first()
        return None if row is None else _operator(row)

    def by_id(self, operator_id: str) -> Operator | None:
        if not operator_id.isdigit():
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(operators).where(operators.c.id == int(operator_id))
            ).first()
        return None if row is None else _operator(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(operators)).scalar_one())

    def failed(self, operator: Operator, *, lock_after: int, lock_until: datetime) -> bool:
        """Count a failed sign-in; lock the account after `lock_after` in a row (audited).
        Whether this failure locked it."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.update(operators)
                .where(operators.c.id == operator.id)
                .values(failed_attempts=operators.c.failed_attempts + 1)
                .returning(operators.c.failed_attempts)
            ).first()
            attempts = int(row.failed_attempts) if row is not None else 0
            if attempts < lock_after:
                return False
            conn.execute(
                sa.update(operators)
                .where(operators.c.id == operator.id)
                .values(locked_until=lock_until, failed_attempts=0)
            )
            self.audit(
                conn,
                operator.username,
                "operator.locked",
                operator.username,
                {"until": lock_until.isoformat(), "failed_attempts": attempts},
            )
            return True

    def succeeded(self, operator: Operator) -> None:
        """A successful sign-in clears the failure count and any lapsed lock (audited)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(operators)
                .where(operators.c.id == operator.id)
                .values(failed_attempts=0, locked_until=None)
            )
            self.audit(conn, operator.username, "operator.sign_in", operator.username, {})

    # -- the audit log ----------------------------------------------------------------------
    def audit(
        self, conn: Connection, actor: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        """Append to the audit log inside the caller's transaction."""
        conn.execute(
            sa.insert(audit_log).values(
                at=self.clock(),
                actor=actor,
                action=action,
                target=target,
                detail=json.dumps(detail, sort_keys=True),
            )
        )

    def record(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """An audit entry in a transaction of its own (an event with no other row to change,
        such as a sign-out)."""
        with self.engine.begin() as conn:
            self.audit(conn, actor, action, target, detail)

    def audit_entries(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest entries first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit))
            return [
                {**dict(r._mapping), "at": aware(r.at), "detail": json.loads(r.detail)}
                for r in rows
            ]
