"""The revenue rollup gains ISO weeks (grain `w`, from Monday 00:00 UTC): a week, or the
weeks at the ends of a long period, read as one bucket instead of seven days. Filled from the
day rows already kept (a week is the sum of its days).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from gateway.ledger.rollup import SUMS, bucket
from gateway.ledger.schema import revenue_rollup

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    t = revenue_rollup.c
    weeks: dict[tuple[str, datetime, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    days = sa.select(t.dimension, t.bucket, t.key, t.currency, *(t[n] for n in SUMS)).where(
        t.grain == "d"
    )
    for dimension, day, key, currency, *sums in conn.execute(days):
        at = day if day.tzinfo is not None else day.replace(tzinfo=UTC)
        week = weeks[(dimension, bucket(at, "w"), key, currency)]
        for i, value in enumerate(sums):
            week[i] += int(value)
    rows = [
        {
            "grain": "w",
            "dimension": d,
            "bucket": w,
            "key": k,
            "currency": c,
            **dict(zip(SUMS, v, strict=True)),
        }
        for (d, w, k, c), v in weeks.items()
    ]
    if rows:
        conn.execute(sa.insert(revenue_rollup), rows)


def downgrade() -> None:
    op.execute(sa.delete(revenue_rollup).where(revenue_rollup.c.grain == "w"))
