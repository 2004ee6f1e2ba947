"""What a terminal's events say of it now: its active faults, whether it is out of service,
and when its newest event came (tables `terminal_health` and `terminal_faults`), kept in the
transaction that stores each new event, so the fleet page reads a row per terminal instead of
replaying every event the fleet ever sent.

Rules written down (the replay they stand for, event by event in `events.seq` order):
- `fault` makes its `detail` an active fault, `fault_cleared` ends it (an unknown one: no
  change); `out_of_service` puts the terminal out of service when its detail is `on` and back
  in service otherwise; every event makes its `at` the terminal's newest if it is later.
- Only a new event counts: one whose key was stored already changes nothing.
- A batch first takes the terminal's `terminal_health` row (an upsert that changes nothing, so
  on PostgreSQL a row lock until the batch commits): two batches of one terminal then store
  their events one after the other, and the order of `events.seq` is the order they were
  applied in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from gateway.ledger.schema import events, terminal_faults, terminal_health


def _insert(conn: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def take(conn: Connection, terminal_id: str) -> None:
    """The terminal's row, made if it is new, locked until the caller's transaction ends."""
    stmt = _insert(conn, terminal_health).values(terminal_id=terminal_id, out_of_service=False)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[terminal_health.c.terminal_id],
            set_={"terminal_id": stmt.excluded.terminal_id},  # no change; the row is locked
        )
    )


def note(conn: Connection, terminal_id: str, kind: str, detail: str, at: datetime) -> None:
    """Apply one new event (after `take`, in its transaction)."""
    h, f = terminal_health.c, terminal_faults.c
    mine = h.terminal_id == terminal_id
    if kind == "fault":
        conn.execute(
            _insert(conn, terminal_faults)
            .values(terminal_id=terminal_id, fault=detail)
            .on_conflict_do_nothing()
        )
    elif kind == "fault_cleared":
        conn.execute(
            sa.delete(terminal_faults).where(f.terminal_id == terminal_id, f.fault == detail)
        )
    elif kind == "out_of_service":
        conn.execute(sa.update(terminal_health).where(mine).values(out_of_service=detail == "on"))
    conn.execute(
        sa.update(terminal_health)
        .where(mine, sa.or_(h.last_event_at.is_(None), h.last_event_at < at))
        .values(last_event_at=at)
    )


def rebuild(conn: Connection) -> int:
    """Both tables again from every stored event (a migration filling them for a ledger that
    had events before they existed); how many terminals."""
    conn.execute(sa.delete(terminal_faults))
    conn.execute(sa.delete(terminal_health))
    seen: set[str] = set()
    rows = conn.execute(
        sa.select(events.c.terminal_id, events.c.kind, events.c.detail, events.c.at).order_by(
            events.c.seq
        )
    ).all()
    for row in rows:
        if row.terminal_id not in seen:
            take(conn, row.terminal_id)
            seen.add(row.terminal_id)
        note(conn, row.terminal_id, row.kind, row.detail, row.at)
    return len(seen)
