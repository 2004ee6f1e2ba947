"""Revenue as the ledger's money movements say it: read-only queries for the operator's
console.

A period's revenue is its capture movements (gross, with the VAT their receipts break out) and
its refund movements, each counted when it happened (`movements.at`), grouped by currency and
by site, station, processor, payment method and card brand. All sums are integers in minor
units of their currency; nothing here is a float.

Rules written down:
- **gross** is what was captured; **vat** is the VAT in it as the receipt states it (the
  receipt totals the capture: `terminal.core.billing`); **net** = gross - vat.
- **refunds** are counted gross in the period they were made, whenever the capture was; a
  refund does not change the capture's period.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.schema import authorizations, movements
from gateway.ledger.store import aware
from gateway.ledger.web_schema import stations

# The dimensions a report is broken down by, with their headings.
DIMENSIONS: dict[str, str] = {
    "site": "Site",
    "station": "Station",
    "processor": "Processor",
    "method": "Payment method",
    "brand": "Card brand",
}
NO_SITE = "(no site)"


@dataclass(slots=True)
class Figures:
    """Sums of one group in one currency (minor units)."""

    sessions: int = 0
    gross: int = 0
    vat: int = 0
    refunds: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.vat

    @property
    def after_refunds(self) -> int:
        return self.gross - self.refunds

    def as_dict(self) -> dict[str, int]:
        return {
            "sessions": self.sessions,
            "gross": self.gross,
            "vat": self.vat,
            "net": self.net,
            "refunds": self.refunds,
            "after_refunds": self.after_refunds,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """One capture or refund with what it is grouped by."""

    kind: str  # capture | refund
    amount: int
    vat: int
    currency: str
    at: datetime
    groups: dict[str, str]


@dataclass(slots=True)
class Report:
    """Totals per currency, per (dimension, key, currency), and a time series of gross per
    currency in `buckets` (bucket start -> minor units)."""

    totals: dict[str, Figures] = field(default_factory=dict)
    by: dict[str, dict[tuple[str, str], Figures]] = field(default_factory=dict)
    series: dict[str, dict[datetime, int]] = field(default_factory=dict)
    last_seq: int = 0


def _vat(receipt: str | None) -> int:
    """The VAT a receipt breaks out (its total less its total excl. VAT)."""
    if not receipt:
        return 0
    data: dict[str, Any] = json.loads(receipt)
    return int(data["total"]) - int(data["total_excl_vat"])


def movements_between(engine: Engine, start: datetime, end: datetime) -> list[Movement]:
    """Captures and refunds with `start <= at < end`, oldest first."""
    m, a, s = movements, authorizations, stations
    query = (
        sa.select(
            m.c.kind,
            m.c.amount,
            m.c.currency,
            m.c.at,
            a.c.terminal_id,
            a.c.processor,
            a.c.card_kind,
            a.c.card_brand,
            a.c.receipt,
            s.c.site,
            s.c.name,
        )
        .select_from(
            m.join(a, a.c.id == m.c.authorization_id).outerjoin(
                s, s.c.terminal_id == a.c.terminal_id
            )
        )
        .where(m.c.kind.in_(("capture", "refund")), m.c.at >= start, m.c.at < end)
        .order_by(m.c.seq)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        Movement(
            kind=r.kind,
            amount=int(r.amount),
            vat=_vat(r.receipt) if r.kind == "capture" else 0,
            currency=r.currency,
            at=aware(r.at),
            groups={
                "site": r.site or NO_SITE,
                "station": r.name or r.terminal_id,
                "processor": r.processor or "(none)",
                "method": r.card_kind,
                "brand": r.card_brand or "(none)",
            },
        )
        for r in rows
    ]


def last_movement(engine: Engine) -> int:
    """The newest movement's sequence number (0: none): pages poll it to know when to refresh."""
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.coalesce(sa.func.max(movements.c.seq), 0))).scalar_one()
        )


def report(items: Iterable[Movement], bucket_of: Any) -> Report:
    """Sum `items`; `bucket_of(at)` gives a capture's time-series bucket."""
    out = Report(by={d: defaultdict(Figures) for d in DIMENSIONS})
    totals: dict[str, Figures] = defaultdict(Figures)
    series: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for item in items:
        targets = [totals[item.currency]] + [
            out.by[d][(item.groups[d], item.currency)] for d in DIMENSIONS
        ]
        for figures in targets:
            if item.kind == "capture":
                figures.sessions += 1
                figures.gross += item.amount
                figures.vat += item.vat
            else:
                figures.refunds += item.amount
        if item.kind == "capture":
            series[item.currency][bucket_of(item.at)] += item.amount
    out.totals = dict(sorted(totals.items()))
    out.by = {d: dict(sorted(groups.items())) for d, groups in out.by.items()}
    out.series = {c: dict(sorted(points.items())) for c, points in sorted(series.items())}
    return out
