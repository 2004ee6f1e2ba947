"""The allow and deny lists of tokens as the console shows and changes them.

The lists themselves are `token_lists` (`gateway.ledger.schema`), served to the kiosks by
`GET /v1/terminal-config` with an ETag; a kiosk applies a change at its next sync. A change
made here is audited in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.schema import authorizations, token_lists
from gateway.ledger.store import aware
from gateway.ledger.web_schema import audit_log

LISTS = ("allow", "deny")
TOKEN_PATTERN = r"^[A-Za-z0-9_.:-]{8,64}$"  # a fleet token (keyed hash) as the kiosks send it

Audit = Callable[
    [Connection, str, str, str, dict[str, Any]], None
]  # (conn, actor, action, on, detail)


def tokens_seen(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Tokens that have started sessions, newest use first, with the list each is on."""
    a = authorizations
    query = (
        sa.select(
            a.c.card_token,
            a.c.card_kind,
            sa.func.max(a.c.card_brand).label("brand"),
            sa.func.max(a.c.card_last4).label("last4"),
            sa.func.max(a.c.created_at).label("last_used"),
            sa.func.count().label("sessions"),
            sa.func.max(token_lists.c.list).label("list"),
        )
        .select_from(a.outerjoin(token_lists, token_lists.c.token == a.c.card_token))
        .group_by(a.c.card_token, a.c.card_kind)
        .order_by(sa.func.max(a.c.created_at).desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{**dict(r._mapping), "last_used": aware(r.last_used)} for r in rows]


def listed(engine: Engine) -> list[dict[str, Any]]:
    """Every token on a list, newest change first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(token_lists).order_by(token_lists.c.at.desc())).all()
    return [{**dict(r._mapping), "at": aware(r.at)} for r in rows]


def put_token(
    engine: Engine,
    token: str,
    list_name: str | None,
    *,
    at: datetime,
    audit: Audit,
    actor: str,
) -> str | None:
    """Put `token` on `list_name` ("allow", "deny") or take it off (None), audited; the list
    it was on before."""
    if list_name not in (None, *LISTS):
        raise ValueError(f"list {list_name!r}")
    with engine.begin() as conn:
        before = conn.execute(
            sa.select(token_lists.c.list).where(token_lists.c.token == token)
        ).scalar_one_or_none()
        conn.execute(sa.delete(token_lists).where(token_lists.c.token == token))
        if list_name is not None:
            conn.execute(sa.insert(token_lists).values(token=token, list=list_name, at=at))
        audit(conn, actor, "token.list", token, {"from": before, "to": list_name})
    return None if before is None else str(before)


def last_changed_by(engine: Engine, token: str) -> str | None:
    """Who made the newest change to a token's list entry (the audit log's actor)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(audit_log.c.actor)
            .where(audit_log.c.action == "token.list", audit_log.c.target == token)
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        ).scalar()
    return None if found is None else str(found)


def list_of(engine: Engine, token: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(token_lists.c.list).where(token_lists.c.token == token)
        ).scalar()
    return None if found is None else str(found)
