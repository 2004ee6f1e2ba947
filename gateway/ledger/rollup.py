"""The revenue rollup: sums of captures and refunds per UTC quarter hour, hour, day, week and
month, kept in the same transaction as every capture and refund movement, so the console's
revenue figures are a few thousand rows of SQL at any fleet size instead of a scan of every
movement.

Rules written down:
- A movement is counted in the buckets of its `at` (the instant the ledger recorded it): the
  UTC quarter hour, hour, day, week (from Monday) and month that hold it. Each grain is
  rolled up for the whole fleet and by terminal, processor, payment method and card brand,
  with the currency (one row per grain, dimension, bucket, key and currency). The site is
  not rolled up: it is read from the terminal's `stations` row when the report is made, as
  the per-movement report did.
- **captures** counts capture movements, **gross** sums them, **vat** sums the VAT their
  receipts break out (total less total excl. VAT), **refunds** sums refund movements (gross,
  counted when they were made, whatever the capture's period).

A period `[start, end)` in any time zone is covered exactly (`cover`): whole UTC months, then
whole weeks, days, hours and quarter hours (the edges of a period in India or Nepal), and what is
left (an offset that is not whole quarter hours) is read from the movements themselves.

`expected_rows` sums the rollup again from the movements and receipts alone (the check the
tests and `ev-terminal`'s migration use); `rebuild` writes it.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ledger.schema import authorizations, movements, revenue_rollup
from gateway.ledger.statements import Statement

# UTC month, week (ISO 8601: from Monday 00:00), day, hour and quarter hour, the coarsest
# first. Every zone in use today is a
# whole number of quarter hours from UTC (India +05:30, Nepal +05:45, Chatham +12:45), so its
# periods are covered by whole buckets; the movements are read only for an offset that is not
# (local mean time before 1900 and the like).
GRAINS = ("m", "w", "d", "h", "q")
# "all" (key "") is the whole fleet: the totals and the chart read it (one row per bucket and
# currency instead of one per method).
ROLLUP_DIMENSIONS = ("all", "terminal", "processor", "method", "brand")
ROLLED_KINDS = ("capture", "refund")
SUMS = ("captures", "gross", "vat", "refunds")
# Every rollup writer on PostgreSQL takes this transaction-scoped advisory lock first: a
# group-commit batch holds the rows of all its units until it commits, and two batches
# taking hot rows (this hour's EUR card payments) in different orders would deadlock. One
# lock, taken first, makes the order the same for everyone. (SQLite has one writer anyway.)
ADVISORY_LOCK = 0x45565252  # "EVRR"

Key = tuple[str, datetime, str, str, str]  # grain, bucket, dimension, key, currency


def bucket(at: datetime, grain: str) -> datetime:
    """The start (aware, UTC) of the quarter hour, hour, day, week or month that holds
    `at`."""
    at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if grain == "q":
        return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    hour = at.replace(minute=0, second=0, microsecond=0)
    if grain == "h":
        return hour
    day = hour.replace(hour=0)
    if grain == "d":
        return day
    if grain == "w":
        return day - timedelta(days=day.weekday())
    if grain == "m":
        return day.replace(day=1)
    raise ValueError(f"grain {grain!r}")


def next_bucket(start: datetime, grain: str) -> datetime:
    """The start of the bucket after the one starting at `start`."""
    if grain == "q":
        return start + timedelta(minutes=15)
    if grain == "h":
        return start + timedelta(hours=1)
    if grain == "d":
        return start + timedelta(days=1)
    if grain == "w":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def _ceil(at: datetime, grain: str) -> datetime:
    floor = bucket(at, grain)
    return floor if floor == at else next_bucket(floor, grain)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cover:
    """`[start, end)` as whole buckets (grain, first bucket start, end) to add, whole buckets
    to take away again (`minus`, from `signed_cover` only), and leftover intervals to read
    from the movements."""

    buckets: tuple[tuple[str, datetime, datetime], ...]
    raw: tuple[tuple[datetime, datetime], ...]
    minus: tuple[tuple[str, datetime, datetime], ...] = ()


def cover(start: datetime, end: datetime, grains: tuple[str, ...] = GRAINS) -> Cover:
    """The fewest whole UTC buckets that tile `[start, end)`, coarsest first, and what is left
    at the edges. Exact for any interval: a bucket is used only if it lies wholly inside."""
    if start >= end:
        return Cover(buckets=(), raw=())
    if not grains:
        return Cover(buckets=(), raw=((start, end),))
    grain, finer = grains[0], grains[1:]
    first, last = _ceil(start, grain), bucket(end, grain)
    if first >= last:
        return cover(start, end, finer)
    left, right = cover(start, first, finer), cover(last, end, finer)
    return Cover(
        buckets=((grain, first, last), *left.buckets, *right.buckets),
        raw=left.raw + right.raw,
    )


def _count(first: datetime, last: datetime, grain: str) -> int:
    """How many buckets of `grain` lie in `[first, last)` (both bucket starts)."""
    if grain == "m":
        return (last.year - first.year) * 12 + last.month - first.month
    step = {
        "q": timedelta(minutes=15),
        "h": timedelta(hours=1),
        "d": timedelta(days=1),
        "w": timedelta(days=7),
    }[grain]
    return (last - first) // step


Piece = tuple[int, str, datetime, datetime]  # sign, grain, first bucket start, end


@functools.lru_cache(maxsize=4096)
def _fewest(start: datetime, end: datetime, level: int) -> tuple[int, tuple[Piece, ...]]:
    """The fewest buckets of GRAINS[level:] whose signed sum is `[start, end)` (both whole
    quarter hours, start < end): at each grain, the period's ends are rounded down or up to
    the grain's buckets and what that adds or leaves out is corrected with finer ones."""
    grain = GRAINS[level]
    if grain == "q":
        return _count(start, end, "q"), ((1, "q", start, end),)
    best = _fewest(start, end, level + 1)
    for first in {bucket(start, grain), _ceil(start, grain)}:
        for last in {bucket(end, grain), _ceil(end, grain)}:
            if first >= last:
                continue
            cost, pieces = _count(first, last, grain), [(1, grain, first, last)]
            # [start, end) = [first, last) + [start, first) - [end, last); a reversed
            # interval is the other sign.
            for lo, hi, sign in (
                (start, first, 1) if start <= first else (first, start, -1),
                (last, end, 1) if last <= end else (end, last, -1),
            ):
                if lo == hi:
                    continue
                more, finer = _fewest(lo, hi, level + 1)
                cost += more
                pieces += [(sign * s, g, a, b) for s, g, a, b in finer]
            if cost < best[0]:
                best = (cost, tuple(pieces))
    return best


def signed_cover(start: datetime, end: datetime) -> Cover:
    """`[start, end)` as few whole buckets as can be, some of them taken away: a month in
    Berlin (23:00 UTC to 23:00 UTC) is its UTC month, plus the hour before, less the last
    hour, three buckets where `cover` needs thirty days and two dozen hours. What is not whole
    quarter hours at the ends is left to the movements, as in `cover`. Exact for any interval,
    because every figure the rollup keeps is a sum."""
    if start >= end:
        return Cover(buckets=(), raw=())
    first, last = _ceil(start, "q"), bucket(end, "q")
    if first >= last:
        return Cover(buckets=(), raw=((start, end),))
    raw = tuple((a, b) for a, b in ((start, first), (last, end)) if a < b)
    _, pieces = _fewest(first, last, 0)
    return Cover(
        buckets=tuple(sorted((g, a, b) for s, g, a, b in pieces if s > 0)),
        minus=tuple(sorted((g, a, b) for s, g, a, b in pieces if s < 0)),
        raw=raw,
    )


# A month start, so on the boundary of every grain: offsets from it are cached and shifted.
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=1024)
def _offset(delta: timedelta, level: int) -> tuple[Piece, ...]:
    """The signed pieces of `[_REFERENCE, _REFERENCE + delta)` (taken away when `delta` is
    negative) in GRAINS[level:]."""
    if not delta:
        return ()
    if delta > timedelta(0):
        return _fewest(_REFERENCE, _REFERENCE + delta, level)[1]
    return tuple((-s, g, a, b) for s, g, a, b in _fewest(_REFERENCE + delta, _REFERENCE, level)[1])


def anchored(at: datetime, grain: str) -> tuple[datetime, tuple[Piece, ...]]:
    """`at` (a whole quarter hour) as the nearest start of a bucket of `grain` (day, hour or
    quarter hour) and the signed finer buckets from there to `at`: `[anchor, at)` added when
    `at` is later, `[at, anchor)` taken away when it is earlier. A chart's buckets are then
    the whole buckets between anchors and these corrections at each end; the corrections are
    worked out once per offset from the anchor (a zone has one or two) and shifted."""
    if grain not in ("d", "h", "q"):
        raise ValueError(f"grain {grain!r} cannot anchor (months are not all alike)")
    floor, ceil = bucket(at, grain), _ceil(at, grain)
    anchor = floor if at - floor <= ceil - at else ceil
    if anchor == at:
        return anchor, ()
    shift = anchor - _REFERENCE
    pieces = _offset(at - anchor, GRAINS.index(grain) + 1)
    return anchor, tuple((s, g, a + shift, b + shift) for s, g, a, b in pieces)


def starts(first: datetime, last: datetime, grain: str) -> list[datetime]:
    """The starts of the buckets of `grain` in `[first, last)`."""
    out = []
    while first < last:
        out.append(first)
        first = next_bucket(first, grain)
    return out


def receipt_vat(receipt: str | None) -> int:
    """The VAT a receipt breaks out (its total less its total excl. VAT)."""
    if not receipt:
        return 0
    data: dict[str, Any] = json.loads(receipt)
    return int(data["total"]) - int(data["total_excl_vat"])


def _deltas(
    *, at: datetime, kind: str, amount: int, vat: int, currency: str, groups: dict[str, str]
) -> list[dict[str, Any]]:
    capture = kind == "capture"
    return sorted(
        (
            {
                "grain": grain,
                "bucket": bucket(at, grain),
                "dimension": dimension,
                "key": groups[dimension],
                "currency": currency,
                "captures": 1 if capture else 0,
                "gross": amount if capture else 0,
                "vat": vat if capture else 0,
                "refunds": 0 if capture else amount,
            }
            for grain in GRAINS
            for dimension in ROLLUP_DIMENSIONS
        ),
        key=lambda r: (r["grain"], r["dimension"], r["bucket"], r["key"], r["currency"]),
    )


def groups_of(row: Any) -> dict[str, str]:
    """What an authorization row is rolled up by (the ledger's own values, unnamed ones as
    stored: the report names them)."""
    return {
        "all": "",
        "terminal": row.terminal_id,
        "processor": row.processor or "",
        "method": row.card_kind,
        "brand": row.card_brand or "",
    }


# One statement adds a movement to every grain (bind `bucket_<grain>`: its bucket's start),
# for the fleet (key '') and by every other dimension (bind `key_<dimension>`), with the
# movement's `currency` and sums: 20 rows from 13 values.
_KEYED = tuple(d for d in ROLLUP_DIMENSIONS if d != "all")
_COLUMNS = ("grain", "dimension", "bucket", "key", "currency", *SUMS)


def _upsert(dialect: str) -> Any:
    """SQLite's INSERT of a movement's rollup rows (the grains crossed with the dimensions,
    in the order of their names), each added to its bucket's row when there is one.
    PostgreSQL writes a whole batch's rows at once (`_upsert_rows`)."""
    if dialect != "sqlite":  # pragma: no cover - PostgreSQL has `_upsert_rows`
        raise RuntimeError(f"unsupported database {dialect}")
    # No casts: SQLite's CAST to a type name it does not know is a CAST to NUMERIC, which
    # would turn a bucket's text into a number.
    grains = ", ".join(f"('{g}', :bucket_{g})" for g in GRAINS)
    keys = ", ".join(
        f"('{d}', {f':key_{d}' if d in _KEYED else repr('')})" for d in ROLLUP_DIMENSIONS
    )
    sums = ", ".join(f":{name}" for name in SUMS)
    added = ", ".join(f"{name} = revenue_rollup.{name} + excluded.{name}" for name in SUMS)
    # Built from this module's constant names; every value is a bind. SQLite needs the WHERE
    # to read ON CONFLICT as the upsert's, not a join's (SQLite, "UPSERT", 2.2).
    sql = " ".join(
        [
            f"INSERT INTO revenue_rollup ({', '.join(_COLUMNS)})",
            "SELECT g.column1, d.column1, g.column2, d.column2, :currency,",
            f"{sums} FROM (VALUES {grains}) AS g CROSS JOIN (VALUES {keys}) AS d",
            "WHERE true ORDER BY g.column1, d.column1",
            "ON CONFLICT (grain, dimension, bucket, key, currency) DO UPDATE SET " + added,
        ]
    )
    t = revenue_rollup.c
    binds = [sa.bindparam(f"bucket_{g}", type_=t.bucket.type) for g in GRAINS]
    binds += [sa.bindparam(f"key_{d}", type_=t.key.type) for d in _KEYED]
    binds += [sa.bindparam("currency", type_=t.currency.type)]
    binds += [sa.bindparam(name, type_=t[name].type) for name in SUMS]
    return sa.text(sql).bindparams(*binds)


# Run on the driver's cursor (`gateway.ledger.statements`), compiled once per dialect.
_UPSERT = Statement(_upsert)


def _upsert_rows() -> Any:
    """PostgreSQL's INSERT of any number of rollup rows, each given whole (its grain,
    dimension, bucket, key, currency and sums) in one array per column (`unnest`): the same
    statement text for a batch of any size, so it is prepared once. It takes
    `ADVISORY_LOCK` first: the lock's CTE is joined to the rows, so it is taken before the
    first row is written, in the same round trip. The rows must be distinct (an upsert may
    not change one row twice)."""
    types: tuple[str, ...] = ("VARCHAR", "VARCHAR", "TIMESTAMP WITH TIME ZONE", "VARCHAR")
    types += ("VARCHAR",) + ("BIGINT",) * len(SUMS)
    arrays = ", ".join(
        f"CAST(:{name} AS {sql_type}[])" for name, sql_type in zip(_COLUMNS, types, strict=True)
    )
    added = ", ".join(f"{name} = revenue_rollup.{name} + excluded.{name}" for name in SUMS)
    sql = " ".join(
        [
            "WITH ev_lock AS (SELECT pg_advisory_xact_lock(:ev_lock))",
            f"INSERT INTO revenue_rollup ({', '.join(_COLUMNS)})",
            # Built from this module's constant names; every value is a bind.
            f"SELECT r.* FROM unnest({arrays}) AS r ({', '.join(_COLUMNS)})",  # noqa: S608
            "CROSS JOIN ev_lock ORDER BY 1, 2, 3, 4, 5",
            "ON CONFLICT (grain, dimension, bucket, key, currency) DO UPDATE SET " + added,
        ]
    )
    binds: list[Any] = [sa.bindparam(name) for name in _COLUMNS]
    binds.append(sa.bindparam("ev_lock", type_=sa.BigInteger))
    return sa.text(sql).bindparams(*binds)


_UPSERT_ROWS = Statement(lambda _dialect: _upsert_rows())


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta:
    """What one capture or refund movement adds to the rollup: its buckets (one per grain,
    in `GRAINS` order), the keys it is rolled up by (`_KEYED` order), its currency, and the
    sums (`SUMS` order)."""

    buckets: tuple[datetime, ...]
    keys: tuple[str, ...]
    currency: str
    sums: tuple[int, int, int, int]


def delta(
    *,
    at: datetime,
    kind: str,
    amount: int,
    vat: int,
    currency: str,
    groups: dict[str, str],
    count: int = 1,
) -> Delta:
    """The rollup delta of a capture or refund movement recorded at `at` (or of `count`
    such movements of one bucket and group, `amount` and `vat` their sums)."""
    if kind not in ROLLED_KINDS:
        raise ValueError(f"kind {kind!r} is not rolled up")
    capture = kind == "capture"
    return Delta(
        buckets=tuple(bucket(at, g) for g in GRAINS),
        keys=tuple(groups[d] for d in _KEYED),
        currency=currency,
        sums=(count, amount, vat, 0) if capture else (0, 0, 0, amount),
    )


def roll_up_all(conn: Connection, deltas: list[Delta]) -> None:
    """Add `deltas` to the rollup inside the caller's transaction (the one that records
    their movements). On PostgreSQL in one statement: each rollup row the deltas touch is
    written once with their sums added together (a group-commit batch's captures at
    several terminals share their fleet, processor, method and brand rows), after taking
    `ADVISORY_LOCK`. On SQLite one statement per distinct buckets, keys and currency."""
    if conn.dialect.name == "postgresql":
        _roll_up_rows(conn, deltas)
        return
    summed: dict[tuple[tuple[datetime, ...], tuple[str, ...], str], list[int]] = {}
    for d in deltas:
        sums = summed.setdefault((d.buckets, d.keys, d.currency), [0, 0, 0, 0])
        for i, value in enumerate(d.sums):
            sums[i] += value
    for (buckets, keys, currency), sums in sorted(summed.items()):
        values: dict[str, Any] = dict(zip((f"bucket_{g}" for g in GRAINS), buckets, strict=True))
        values.update(zip((f"key_{d}" for d in _KEYED), keys, strict=True))
        values.update(zip(SUMS, sums, strict=True))
        values["currency"] = currency
        _UPSERT.execute(conn, values)


def _roll_up_rows(conn: Connection, deltas: list[Delta]) -> None:
    """PostgreSQL: the deltas summed per rollup row, written in one statement."""
    rows: dict[tuple[str, str, datetime, str, str], list[int]] = {}
    for d in deltas:
        keys = dict(zip(_KEYED, d.keys, strict=True))
        for grain, at in zip(GRAINS, d.buckets, strict=True):
            for dimension in ROLLUP_DIMENSIONS:
                row = (grain, dimension, at, keys.get(dimension, ""), d.currency)
                sums = rows.setdefault(row, [0, 0, 0, 0])
                for i, value in enumerate(d.sums):
                    sums[i] += value
    if not rows:
        return
    columns = list(zip(*(key + tuple(sums) for key, sums in rows.items()), strict=True))
    values: dict[str, Any] = {name: list(col) for name, col in zip(_COLUMNS, columns, strict=True)}
    values["ev_lock"] = ADVISORY_LOCK
    _UPSERT_ROWS.execute(conn, values)


def movement_rows() -> Any:
    """A SELECT of movements with what the rollup sums them by: their sequence number,
    kind, amount, currency and time, and their authorization's terminal, processor, card
    kind and brand, and receipt (its VAT)."""
    m, a = movements, authorizations
    return sa.select(
        m.c.seq,
        m.c.kind,
        m.c.amount,
        m.c.currency,
        m.c.at,
        a.c.terminal_id,
        a.c.processor,
        a.c.card_kind,
        a.c.card_brand,
        a.c.receipt,
    ).select_from(m.join(a, a.c.id == m.c.authorization_id))


def expected_rows(conn: Connection) -> dict[Key, tuple[int, int, int, int]]:
    """The rollup summed from scratch: every capture and refund movement with its
    authorization and receipt."""
    query = movement_rows().where(movements.c.kind.in_(ROLLED_KINDS))
    sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in conn.execute(query):
        vat = receipt_vat(r.receipt) if r.kind == "capture" else 0
        for d in _deltas(
            at=r.at,
            kind=r.kind,
            amount=int(r.amount),
            vat=vat,
            currency=r.currency,
            groups=groups_of(r),
        ):
            key = (d["grain"], d["bucket"], d["dimension"], d["key"], d["currency"])
            for i, name in enumerate(SUMS):
                sums[key][i] += d[name]
    return {k: (v[0], v[1], v[2], v[3]) for k, v in sums.items()}


def stored_rows(conn: Connection) -> dict[Key, tuple[int, int, int, int]]:
    """The rollup as stored (times aware, in UTC)."""
    out: dict[Key, tuple[int, int, int, int]] = {}
    for r in conn.execute(sa.select(revenue_rollup)):
        at = r.bucket if r.bucket.tzinfo is not None else r.bucket.replace(tzinfo=UTC)
        key = (r.grain, at.astimezone(UTC), r.dimension, r.key, r.currency)
        out[key] = (int(r.captures), int(r.gross), int(r.vat), int(r.refunds))
    return out


def rebuild(conn: Connection) -> int:
    """Write the rollup again from the movements (a migration filling it for a ledger that had
    movements before it existed); how many rows it has."""
    conn.execute(sa.delete(revenue_rollup))
    rows = [
        {
            "grain": k[0],
            "bucket": k[1],
            "dimension": k[2],
            "key": k[3],
            "currency": k[4],
            **dict(zip(SUMS, v, strict=True)),
        }
        for k, v in expected_rows(conn).items()
    ]
    if rows:
        conn.execute(sa.insert(revenue_rollup), rows)
    return len(rows)


def in_cover(c: Cover) -> Iterable[Any]:
    """WHERE clauses selecting the rollup rows of a cover's whole buckets."""
    t = revenue_rollup.c
    return [
        sa.and_(t.grain == grain, t.bucket >= first, t.bucket < last)
        for grain, first, last in c.buckets
    ]
