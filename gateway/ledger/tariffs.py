"""Tariffs as the console keeps them and the terminals receive them: an OCPI 2.2.1 Tariff
object per id (validated by the kiosk's own parser before it is stored, so a terminal is never
sent one it cannot price with), and the tariff each station prices with. Changes are audited in
the same transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.store import aware
from gateway.ledger.web_schema import station_tariffs, tariffs

Audit = Callable[[Connection, str, str, str, dict[str, Any]], None]


def all_tariffs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tariffs).order_by(tariffs.c.id)).all()
        assigned = conn.execute(sa.select(station_tariffs)).all()
    stations: dict[str, list[str]] = {}
    for a in assigned:
        stations.setdefault(a.tariff_id, []).append(a.terminal_id)
    return [
        {
            "id": r.id,
            "currency": r.currency,
            "updated_at": aware(r.updated_at),
            "stations": sorted(stations.get(r.id, [])),
        }
        for r in rows
    ]


def tariff(engine: Engine, tariff_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
        if row is None:
            return None
        stations = conn.execute(
            sa.select(station_tariffs.c.terminal_id).where(station_tariffs.c.tariff_id == tariff_id)
        ).scalars()
        return {
            "id": row.id,
            "currency": row.currency,
            "ocpi": row.ocpi,
            "updated_at": aware(row.updated_at),
            "stations": sorted(stations),
        }


def save(
    engine: Engine,
    tariff_id: str,
    currency: str,
    ocpi: str,
    *,
    at: datetime,
    audit: Audit,
    actor: str,
) -> bool:
    """Store a tariff (new, or a new version of one); whether it was new."""
    with engine.begin() as conn:
        changed = conn.execute(
            sa.update(tariffs)
            .where(tariffs.c.id == tariff_id)
            .values(currency=currency, ocpi=ocpi, updated_at=at)
        ).rowcount
        if not changed:
            conn.execute(
                sa.insert(tariffs).values(id=tariff_id, currency=currency, ocpi=ocpi, updated_at=at)
            )
        audit(conn, actor, "tariff.save", tariff_id, {"new": not changed, "currency": currency})
    return not changed


def assign(
    engine: Engine, tariff_id: str, terminals: list[str], *, audit: Audit, actor: str
) -> None:
    """Make `tariff_id` the tariff of each of `terminals` (replacing what they had)."""
    with engine.begin() as conn:
        for terminal in terminals:
            conn.execute(
                sa.delete(station_tariffs).where(station_tariffs.c.terminal_id == terminal)
            )
            conn.execute(
                sa.insert(station_tariffs).values(terminal_id=terminal, tariff_id=tariff_id)
            )
        audit(conn, actor, "tariff.assign", tariff_id, {"stations": sorted(terminals)})


def for_terminal(engine: Engine, terminal_id: str) -> dict[str, Any] | None:
    """The OCPI Tariff object a terminal prices with, or None if none is assigned."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(tariffs.c.ocpi)
            .select_from(tariffs.join(station_tariffs, station_tariffs.c.tariff_id == tariffs.c.id))
            .where(station_tariffs.c.terminal_id == terminal_id)
        ).scalar()
    return None if found is None else dict(json.loads(found))
