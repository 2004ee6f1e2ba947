"""The revenue rollup (`gateway.ledger.rollup`), filled from the movements already recorded;
the drivers' history index by card and time.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.ledger.rollup import rebuild

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revenue_rollup",
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("captures", sa.BigInteger(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("vat", sa.BigInteger(), nullable=False),
        sa.Column("refunds", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "dimension", "bucket", "key", "currency"),
    )
    # A ledger with movements before the rollup existed gets them summed now (the migration
    # runs in one transaction, so no capture can land between the sum and the first upsert).
    rebuild(op.get_bind())
    op.drop_index("ix_authorizations_card_token", table_name="authorizations")
    op.create_index("authorizations_card_time", "authorizations", ["card_token", "created_at"])


def downgrade() -> None:
    op.drop_index("authorizations_card_time", table_name="authorizations")
    op.create_index("ix_authorizations_card_token", "authorizations", ["card_token"])
    op.drop_table("revenue_rollup")
