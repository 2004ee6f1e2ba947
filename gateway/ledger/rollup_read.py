"""Reading the revenue rollup for a report: a cover's sums per (dimension, key, currency) and a
chart's gross per bucket and currency (`gateway.ledger.revenue` puts them together).

On PostgreSQL each is one constant statement run on the driver's cursor, with the cover or the
chart's buckets as array parameters: the statement's text never changes, so psycopg prepares
it after a few runs, the server plans it once, and the Python side builds no SQL per report
(building and compiling it cost more CPU than the database spent reading). Each run of buckets
is a range of the primary key (grain, dimension, bucket), which carries the sums (`INCLUDE`,
migration 0012): the rows are read from the index alone. SQLite, where a rollup is one site's,
gets the same sums from SQLAlchemy Core statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ledger.rollup import GRAINS, ROLLUP_DIMENSIONS, SUMS, Cover, anchored
from gateway.ledger.schema import revenue_rollup
from gateway.ledger.store import aware

# (dimension, key, currency, captures, gross, vat, refunds); groups that come to nothing (a
# terminal heard from only in a bucket taken away again) are left out, as the movements
# would leave them out.
_PG_SUMS = """
SELECT r.dimension, r.key, r.currency, sum(p.sign * r.captures)::bigint,
       sum(p.sign * r.gross)::bigint, sum(p.sign * r.vat)::bigint,
       sum(p.sign * r.refunds)::bigint
FROM unnest(%(signs)s::int[], %(grains)s::text[], %(firsts)s::timestamptz[],
            %(lasts)s::timestamptz[]) AS p(sign, grain, first, last)
CROSS JOIN LATERAL (
    SELECT dimension, key, currency, captures, gross, vat, refunds FROM revenue_rollup
    WHERE grain = p.grain AND dimension = ANY(%(dimensions)s::text[])
      AND bucket >= p.first AND bucket < p.last
) AS r
GROUP BY 1, 2, 3
HAVING sum(p.sign * r.captures) <> 0 OR sum(p.sign * r.gross) <> 0
    OR sum(p.sign * r.vat) <> 0 OR sum(p.sign * r.refunds) <> 0
"""

# (chart bucket index, currency, gross): each wanted fleet row (grain, start as Unix seconds)
# looked up once, added with its sign to every chart bucket that wants it.
_PG_CHART = """
WITH w AS (
    SELECT * FROM unnest(%(grains)s::text::text[], %(starts)s::text::bigint[],
                         %(signs)s::text::int[], %(buckets)s::text::int[])
        AS w(grain, at, sign, i)
), found AS (
    SELECT b.grain, b.at, r.currency, r.gross
    FROM (SELECT DISTINCT grain, at FROM w) AS b
    CROSS JOIN LATERAL (
        SELECT currency, gross FROM revenue_rollup
        WHERE grain = b.grain AND dimension = 'all' AND bucket = to_timestamp(b.at)
    ) AS r
)
SELECT w.i, found.currency, sum(w.sign * found.gross)::bigint
FROM w JOIN found ON found.grain = w.grain AND found.at = w.at
GROUP BY 1, 2
"""


def _driver_rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """`sql` run on the driver's own cursor, in `conn`'s transaction."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def cover_sums(conn: Connection, c: Cover) -> list[tuple[Any, ...]]:
    """The cover's sums of every dimension: its buckets less its `minus` buckets, as
    (dimension, key, currency, captures, gross, vat, refunds)."""
    pieces = [(1, *p) for p in c.buckets] + [(-1, *p) for p in c.minus]
    if conn.dialect.name == "postgresql":
        return _driver_rows(
            conn,
            _PG_SUMS,
            {
                "signs": [s for s, _, _, _ in pieces],
                "grains": [g for _, g, _, _ in pieces],
                "firsts": [f for _, _, f, _ in pieces],
                "lasts": [last for _, _, _, last in pieces],
                "dimensions": list(ROLLUP_DIMENSIONS),
            },
        )
    t = revenue_rollup.c
    branches = [
        sa.select(
            sa.literal_column(str(sign)).label("sign"),
            t.dimension,
            t.key,
            t.currency,
            t.captures,
            t.gross,
            t.vat,
            t.refunds,
        ).where(
            t.grain == grain,
            t.dimension.in_(ROLLUP_DIMENSIONS),
            t.bucket >= first,
            t.bucket < last,
        )
        for sign, grain, first, last in pieces
    ]
    u = sa.union_all(*branches).subquery()
    sums = [sa.func.sum(u.c.sign * u.c[name]) for name in SUMS]
    query = (
        sa.select(u.c.dimension, u.c.key, u.c.currency, *sums)
        .group_by(u.c.dimension, u.c.key, u.c.currency)
        .having(sa.or_(*(total != 0 for total in sums)))
    )
    return [tuple(int(v) if i > 2 else v for i, v in enumerate(r)) for r in conn.execute(query)]


# The length of a chart's grains (a month is not one of them).
SECONDS = {"d": 86_400, "h": 3_600, "q": 900}


def _seconds(grain: str, first: datetime, last: datetime) -> range:
    """The starts (Unix seconds) of the buckets of `grain` in `[first, last)`."""
    return range(int(first.timestamp()), int(last.timestamp()), SECONDS[grain])


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of plain values (digits, signs, grain letters)."""
    return "{" + ",".join(map(str, values)) + "}"


def chart(
    conn: Connection, buckets: Sequence[datetime], edges: Sequence[datetime], *, daily: bool
) -> dict[str, dict[datetime, int]]:
    """Gross per currency in each chart bucket `[edges[i], edges[i + 1])` (whole quarter
    hours), summed exactly from the fleet's rows: each edge is anchored to its nearest UTC day
    (or hour) start with a few signed finer buckets (`rollup.anchored`), and a bucket is the
    whole days between its anchors plus the correction at its end less the one at its start
    (a Berlin day: its UTC day, one hour added, one taken away)."""
    grain = "d" if daily else "h"
    anchors = [anchored(at, grain) for at in edges]
    # (grain, bucket start in Unix seconds, sign, chart bucket): a chart's grains are days,
    # hours and quarter hours, each a fixed number of seconds.
    wanted: list[tuple[str, int, int, int]] = []
    for i in range(len(buckets)):
        (first, before), (last, after) = anchors[i], anchors[i + 1]
        wanted += [(grain, at, 1, i) for at in _seconds(grain, first, last)]
        for sign, pieces in ((1, after), (-1, before)):
            for s, g, a, b in pieces:
                wanted += [(g, at, sign * s, i) for at in _seconds(g, a, b)]
    sums: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    if conn.dialect.name == "postgresql":
        # Arrays as their text (psycopg's per-element dumping of thousands cost more).
        rows = _driver_rows(
            conn,
            _PG_CHART,
            {
                "grains": _array(g for g, _, _, _ in wanted),
                "starts": _array(at for _, at, _, _ in wanted),
                "signs": _array(s for _, _, s, _ in wanted),
                "buckets": _array(i for _, _, _, i in wanted),
            },
        )
        for i, currency, gross in rows:
            sums[currency][i] += int(gross)
    else:
        by_start: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for g, at, sign, i in wanted:
            by_start[(g, at)].append((sign, i))
        t = revenue_rollup.c
        branches = [
            sa.select(t.grain, t.bucket, t.currency, t.gross).where(
                t.grain == g,
                t.dimension == "all",
                t.bucket.in_(
                    sorted(datetime.fromtimestamp(at, UTC) for wg, at in by_start if wg == g)
                ),
            )
            for g in GRAINS
            if any(wg == g for wg, _ in by_start)
        ]
        if branches:
            for g, at, currency, gross in conn.execute(sa.union_all(*branches)):
                for sign, i in by_start[(g, int(aware(at).timestamp()))]:
                    sums[currency][i] += sign * int(gross)
    return {
        currency: {buckets[i]: v for i, v in sorted(points.items()) if v}
        for currency, points in sorted(sums.items())
    }
