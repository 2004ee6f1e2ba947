"""Tariffs edited in the console and their stations (`gateway.ledger.web_schema`).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tariffs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("ocpi", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "station_tariffs",
        sa.Column("terminal_id", sa.String(64), primary_key=True),
        sa.Column("tariff_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_station_tariffs_tariff_id", "station_tariffs", ["tariff_id"])


def downgrade() -> None:
    op.drop_table("station_tariffs")
    op.drop_table("tariffs")
