"""Revenue as the ledger's money movements say it: read-only queries for the operator's
console.

A period's revenue is its capture movements (gross, with the VAT their receipts break out) and
its refund movements, each counted when it happened (`movements.at`), grouped by currency and
by site, station, processor, payment method and card brand. All sums are integers in minor
units of their currency; nothing here is a float.

`revenue` reads the rollup (`gateway.ledger.rollup`): whole UTC months, days and hours of the
period from their sums, and only what is left at its edges (a zone whose offset is not a
whole hour) from the movements, so a report costs the same for ten stations or ten thousand.

Rules written down:
- **gross** is what was captured; **vat** is the VAT in it as the receipt states it (the
  receipt totals the capture: `terminal.core.billing`); **net** = gross - vat.
- **refunds** are counted gross in the period they were made, whenever the capture was; a
  refund does not change the capture's period.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger import rollup_read
from gateway.ledger.rollup import ROLLED_KINDS, bucket, movement_rows, receipt_vat, signed_cover
from gateway.ledger.rollup_pending import catch_up
from gateway.ledger.schema import authorizations, movements, revenue_rollup
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


def movements_between(engine: Engine, start: datetime, end: datetime) -> list[Movement]:
    """Captures and refunds with `start <= at < end`, oldest first."""
    with engine.connect() as conn:
        return _movements(conn, start, end)


def _movements(conn: Connection, start: datetime, end: datetime) -> list[Movement]:
    m, a, s = movements, authorizations, stations
    query = (
        movement_rows()
        .add_columns(s.c.site, s.c.name)
        .outerjoin_from(a, s, s.c.terminal_id == a.c.terminal_id)
        .where(m.c.kind.in_(ROLLED_KINDS), m.c.at >= start, m.c.at < end)
        .order_by(m.c.seq)
    )
    rows = conn.execute(query).all()
    return [
        Movement(
            kind=r.kind,
            amount=int(r.amount),
            vat=receipt_vat(r.receipt) if r.kind == "capture" else 0,
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


def _add(figures: Figures, captures: int, gross: int, vat: int, refunds: int) -> None:
    figures.sessions += captures
    figures.gross += gross
    figures.vat += vat
    figures.refunds += refunds


def revenue(
    engine: Engine,
    start: datetime,
    end: datetime,
    buckets: Sequence[datetime],
    *,
    days_in: str | None = None,
) -> Report:
    """The report of `[start, end)` from the rollup's whole buckets (`signed_cover`: some
    added, some taken away), with the movements at its edges that no quarter hour covers.
    `buckets`: the chart's bucket starts (aware, ascending, the first at `start`); each ends
    where the next starts; `days_in`: the zone, when they are its local days. When every
    chart bucket starts on a quarter hour (every zone in use today) each is summed exactly
    from its own signed cover; otherwise a rollup hour goes to the bucket that holds its
    start."""
    c = signed_cover(start, end)
    instants = [b.astimezone(UTC) for b in buckets]

    def bucket_of(at: datetime) -> datetime:
        return buckets[max(0, bisect_right(instants, at) - 1)]

    totals: dict[str, Figures] = defaultdict(Figures)
    by: dict[str, dict[tuple[str, str], Figures]] = {d: defaultdict(Figures) for d in DIMENSIONS}
    series: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    catch_up(engine)  # every capture committed before the report was asked for is in it
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # A report reads a few thousand index entries: starting parallel workers or
            # compiling it (JIT; the planner, not knowing the array parameters' runs, expects
            # a whole grain) costs more than the reading.
            conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            conn.execute(sa.text("SET LOCAL jit = off"))
        known = sa.select(stations.c.terminal_id, stations.c.site, stations.c.name)
        names = {
            terminal: (site or NO_SITE, name or terminal)
            for terminal, site, name in conn.execute(known).all()
        }
        if c.buckets:
            for dim, key, currency, *values in rollup_read.cover_sums(conn, c):
                if dim == "terminal":
                    site, station = names.get(key, (NO_SITE, key))
                    _add(by["site"][(site, currency)], *values)
                    _add(by["station"][(station, currency)], *values)
                elif dim == "all":
                    _add(totals[currency], *values)
                elif dim == "method":
                    _add(by["method"][(key, currency)], *values)
                else:
                    _add(by[dim][(key or "(none)", currency)], *values)
            edges_of_buckets = [*instants, end.astimezone(UTC)]
            if all(bucket(at, "q") == at for at in edges_of_buckets):
                daily = days_in is not None
                chart = rollup_read.chart(conn, buckets, edges_of_buckets, daily=daily)
                for currency, points in chart.items():
                    series[currency] = defaultdict(int, points)
            else:
                whole = (
                    min(f for _, f, _ in c.buckets + c.minus),
                    max(last for _, _, last in c.buckets + c.minus),
                )
                for at, currency, gross in _chart_by_start(conn, whole, days_in):
                    series[currency][bucket_of(aware(at))] += int(gross)
        edges = [m for first, last in c.raw for m in _movements(conn, first, last)]
    out = Report(
        totals=dict(totals), by={d: dict(groups) for d, groups in by.items()}, series=series
    )
    return merge(out, report(edges, bucket_of)) if edges else _sorted(out)


def _chart_by_start(conn: Connection, whole: tuple[datetime, datetime], days_in: str | None) -> Any:
    """(bucket, currency, gross) from the fleet's hourly rows in `whole` (the period's whole
    hours), for chart buckets that do not start on quarter hours.
    For local days (`days_in`: the zone) on PostgreSQL the database groups the hours into
    days itself (`date_trunc` in the zone). Otherwise the rows are the hours (a day has 24)."""
    t = revenue_rollup.c
    at: Any = t.bucket
    if days_in is not None and conn.dialect.name == "postgresql":
        at = sa.func.date_trunc("day", t.bucket, days_in)
    query = (
        sa.select(at.label("at"), t.currency, sa.func.sum(t.gross))
        .where(
            t.grain == "h",
            t.dimension == "all",
            t.bucket >= whole[0],
            t.bucket < whole[1],
            t.gross > 0,
        )
        .group_by(at, t.currency)
    )
    return conn.execute(query)


def _sorted(r: Report) -> Report:
    """`r` sorted as `report` sorts."""
    return Report(
        totals=dict(sorted(r.totals.items())),
        by={d: dict(sorted(groups.items())) for d, groups in r.by.items()},
        series={c: dict(sorted(points.items())) for c, points in sorted(r.series.items())},
    )


def merge(a: Report, b: Report) -> Report:
    """Two reports of disjoint movements as one, sorted as `report` sorts."""
    totals: dict[str, Figures] = defaultdict(Figures)
    by: dict[str, dict[tuple[str, str], Figures]] = {d: defaultdict(Figures) for d in DIMENSIONS}
    series: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for part in (a, b):
        for currency, f in part.totals.items():
            _add(totals[currency], f.sessions, f.gross, f.vat, f.refunds)
        for d, groups in part.by.items():
            for group, f in groups.items():
                _add(by[d][group], f.sessions, f.gross, f.vat, f.refunds)
        for currency, points in part.series.items():
            for at, gross in points.items():
                series[currency][at] += gross
    return Report(
        totals=dict(sorted(totals.items())),
        by={d: dict(sorted(groups.items())) for d, groups in by.items()},
        series={c: dict(sorted(points.items())) for c, points in sorted(series.items())},
    )
