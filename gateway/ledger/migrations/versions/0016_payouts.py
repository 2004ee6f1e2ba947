"""Payouts to a payer's own wallet (`payouts`): a prepayment's change paid back, and refunds
paid to a destination the payer gave, each with what proves it (the Lightning payment hash
and preimage), the satoshis and the rate they were reckoned at.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("authorization_id", sa.String(64), primary_key=True),
        sa.Column("step_key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("sats", sa.BigInteger(), nullable=False),
        sa.Column("btc_price", sa.String(40), nullable=False),
        sa.Column("payment_hash", sa.String(64), nullable=False),
        sa.Column("preimage", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payouts")
