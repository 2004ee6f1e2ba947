"""Read-only snapshots for the console's fleet and money pages (house style 17: a page reads
one snapshot from the ledger package and renders it).

What the gateway knows of a terminal is what reached it: its events (faults, out-of-service,
starts), its newest status (software version, outbox depth and age, sessions under way with
energy and cost so far: sent with its events and as a heartbeat), its authorizations and its
signed readings. The fleet page reads only what is kept per terminal and the open holds, so
its cost grows with the fleet, not with the sessions and readings of its history (`fleet`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger import payouts
from gateway.ledger.schema import (
    APPROVED,
    CAPTURED,
    authorizations,
    meter_readings,
    movements,
    terminal_faults,
    terminal_health,
    terminal_status,
)
from gateway.ledger.schema import payouts as payouts_table
from gateway.ledger.store import aware
from gateway.ledger.web_schema import stations
from terminal import ocmf

ONLINE_WITHIN = timedelta(minutes=10)  # a terminal heard from in this window is online


@dataclass(slots=True, kw_only=True)
class Terminal:
    terminal_id: str
    name: str
    site: str
    last_seen: datetime | None = None
    faults: set[str] = field(default_factory=set)
    out_of_service: bool = False
    open_holds: int = 0
    software_version: str | None = None  # None: the terminal has sent no status
    queue_depth: int | None = None
    oldest_unsent_s: int | None = None  # as of `status_at`
    status_at: datetime | None = None  # when the gateway received the status

    def oldest_unsent_now(self, now: datetime) -> int | None:
        """How long the oldest unsent request has waited by `now`, as far as the gateway can
        tell (the age the kiosk reported, plus the time since)."""
        if self.oldest_unsent_s is None or self.status_at is None:
            return None
        return self.oldest_unsent_s + max(0, int((now - self.status_at).total_seconds()))

    def online(self, now: datetime) -> bool:
        return self.last_seen is not None and now - self.last_seen <= ONLINE_WITHIN


def _latest(current: datetime | None, seen: Any) -> datetime | None:
    if seen is None:
        return current
    seen = aware(seen)
    return seen if current is None or seen > current else current


def fleet(engine: Engine) -> list[Terminal]:
    """Every terminal of the fleet, by site and name: those registered (`stations`), those
    that report (a status or an event kept for them) and those holding money (an approved
    hold), with what each has said of itself.

    "Last seen" is when the gateway last heard from the kiosk itself: the newer of its newest
    status (a heartbeat every 2 minutes, `terminal.shell.sender.STATUS_EVERY_MS`, sent whether
    or not its outbox is moving) and its newest event. An authorization's `updated_at` is not
    used: it also moves when the gateway acts alone (the reconciler, a processor's webhook, a
    hold's expiry), so a dead kiosk's hold voided by the reconciler would show it online. Its
    signed readings are not used either: a kiosk able to send them sends its heartbeat too.

    Each query reads a row per terminal, per active fault or per open hold (through the
    `authorizations_open` index on (status, op)): never a session's or a reading's history.
    So a terminal known only from settled sessions and readings (not registered, no status or
    event ever kept, no open hold) is not on the page: it is not part of the fleet any more;
    its payments stay in the payments search, the revenue and the driver's history.

    Active faults, out-of-service and the newest event are what the terminal's events say
    now, kept as each arrives (`gateway.ledger.terminal_health`), not replayed here."""
    found: dict[str, Terminal] = {}

    def terminal(tid: str) -> Terminal:
        return found.setdefault(tid, Terminal(terminal_id=tid, name=tid, site=""))

    a = authorizations
    with engine.connect() as conn:
        for row in conn.execute(sa.select(stations)):
            t = terminal(row.terminal_id)
            t.name, t.site = row.name or row.terminal_id, row.site
        for row in conn.execute(sa.select(terminal_health)):
            t = terminal(row.terminal_id)
            t.last_seen = _latest(t.last_seen, row.last_event_at)
            t.out_of_service = bool(row.out_of_service)
        for row in conn.execute(sa.select(terminal_faults)):
            terminal(row.terminal_id).faults.add(row.fault)
        for row in conn.execute(
            sa.select(a.c.terminal_id, sa.func.count().label("open"))
            .where(a.c.status == APPROVED)
            .group_by(a.c.terminal_id)
        ):
            terminal(row.terminal_id).open_holds = int(row.open)
        for row in conn.execute(sa.select(terminal_status)):
            t = terminal(row.terminal_id)
            status = json.loads(row.status)
            t.status_at = aware(row.received_at)
            t.last_seen = _latest(t.last_seen, row.received_at)
            t.software_version = status["software_version"]
            t.queue_depth = int(status["queue_depth"])
            t.oldest_unsent_s = status.get("oldest_unsent_s")
    return sorted(found.values(), key=lambda t: (t.site or "~", t.name))


def active_sessions(engine: Engine) -> list[dict[str, Any]]:
    """Approved holds not yet captured or voided (sessions under way, or waiting to settle),
    oldest first, with the energy so far: the newest signed reading's register less the
    session's begin reading (OCMF `RD[].RV`, kWh), when the kiosk has sent them."""
    a = authorizations
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                a.c.id,
                a.c.terminal_id,
                a.c.currency,
                a.c.amount_authorized,
                a.c.created_at,
                a.c.flag,
            )
            .where(a.c.status == APPROVED)
            .order_by(a.c.created_at)
        ).all()
        readings: dict[str, list[str]] = {}
        if rows:
            for r in conn.execute(
                sa.select(meter_readings.c.authorization_id, meter_readings.c.ocmf)
                .where(meter_readings.c.authorization_id.in_([r.id for r in rows]))
                .order_by(meter_readings.c.seq)
            ):
                readings.setdefault(r.authorization_id, []).append(r.ocmf)
        # What the kiosks said of their sessions in their newest status.
        progress: dict[str, dict[str, Any]] = {}
        if rows:
            for r in conn.execute(
                sa.select(terminal_status.c.status).where(
                    terminal_status.c.terminal_id.in_({r.terminal_id for r in rows})
                )
            ):
                for s in json.loads(r.status).get("sessions", []):
                    progress[s["session_id"]] = s
    return [
        {
            "id": r.id,
            "terminal_id": r.terminal_id,
            "currency": r.currency,
            "held": int(r.amount_authorized or 0),
            "since": aware(r.created_at),
            "flag": r.flag,
            "energy_wh": _kiosk_energy(progress.get(r.id))
            or _energy_so_far(readings.get(r.id, [])),
            "cost": _kiosk_cost(progress.get(r.id), r.currency),
        }
        for r in rows
    ]


def _kiosk_energy(progress: dict[str, Any] | None) -> int | None:
    return None if progress is None else int(progress["energy_wh"])


def _kiosk_cost(progress: dict[str, Any] | None, currency: str) -> int | None:
    """The cost so far the kiosk reported (minor units), if it is in the session's currency."""
    cost = None if progress is None else progress.get("cost")
    if not cost or cost["currency"] != currency:
        return None
    return int(cost["minor"])


def _energy_so_far(texts: list[str]) -> int | None:
    """Wh between the first and the newest reading of a session (None: fewer than two)."""
    values: list[Decimal] = []
    for text in texts:
        try:
            found = ocmf.parse(text).payload.get("RD") or []
            values.extend(Decimal(str(r["RV"])) for r in found if "RV" in r)
        except (ocmf.OcmfError, KeyError, TypeError, ArithmeticError):
            continue  # stored as the terminal sent it; an unreadable one says nothing here
    if len(values) < 2:
        return None
    return int((values[-1] - values[0]) * 1000)


def find_payments(engine: Engine, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Captured payments, newest first; with `text`, those whose authorization id, receipt id
    or terminal id contains it."""
    a = authorizations
    query = sa.select(
        a.c.id,
        a.c.terminal_id,
        a.c.currency,
        a.c.amount_captured,
        a.c.amount_refunded,
        a.c.receipt_id,
        a.c.card_brand,
        a.c.card_last4,
        a.c.updated_at,
    ).where(a.c.status == CAPTURED)
    if text:
        like = f"%{text}%"
        query = query.where(
            sa.or_(a.c.id.like(like), a.c.receipt_id.like(like), a.c.terminal_id.like(like))
        )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(a.c.updated_at.desc(), a.c.id).limit(limit)).all()
    return [{**dict(r._mapping), "updated_at": aware(r.updated_at)} for r in rows]


def payment(engine: Engine, authorization_id: str) -> dict[str, Any] | None:
    """One authorization with its money movements and receipt, for the console."""
    a = authorizations
    with engine.connect() as conn:
        row = conn.execute(sa.select(a).where(a.c.id == authorization_id)).first()
        if row is None:
            return None
        moves = conn.execute(
            sa.select(movements.c.kind, movements.c.amount, movements.c.currency, movements.c.at)
            .where(movements.c.authorization_id == authorization_id)
            .order_by(movements.c.seq)
        ).all()
    data = {k: v for k, v in row._mapping.items() if k not in ("card_token", "op_detail", "op_key")}
    data["receipt"] = json.loads(row.receipt) if row.receipt else None
    data["movements"] = [{**dict(m._mapping), "at": aware(m.at)} for m in moves]
    data["created_at"] = aware(row.created_at)
    data["refundable"] = (
        int(row.amount_captured) - int(row.amount_refunded) if row.status == CAPTURED else 0
    )
    with engine.connect() as conn:
        data["change_owed"] = payouts.owed(conn, authorization_id)
        found = conn.execute(
            sa.select(payouts_table)
            .where(payouts_table.c.authorization_id == authorization_id)
            .order_by(payouts_table.c.at)
        ).all()
    data["payouts"] = [{**dict(o._mapping), "at": aware(o.at)} for o in found]
    return data
