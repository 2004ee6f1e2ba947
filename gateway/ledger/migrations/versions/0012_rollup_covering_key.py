"""The revenue rollup's primary key carries its sums (PostgreSQL): a report reads whole buckets
from the index alone (an index-only scan), never the table.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KEY = "grain, dimension, bucket, key, currency"


def upgrade() -> None:
    # SQLite has no INCLUDE; its rollup stays as it is (a report there is one kiosk site's).
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE revenue_rollup DROP CONSTRAINT revenue_rollup_pkey")
    op.execute(
        f"ALTER TABLE revenue_rollup ADD CONSTRAINT revenue_rollup_pkey PRIMARY KEY ({KEY}) "
        "INCLUDE (captures, gross, vat, refunds)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE revenue_rollup DROP CONSTRAINT revenue_rollup_pkey")
    op.execute(f"ALTER TABLE revenue_rollup ADD CONSTRAINT revenue_rollup_pkey PRIMARY KEY ({KEY})")
