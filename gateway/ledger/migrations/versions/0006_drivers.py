"""The driver's portal: drivers, the cards and tokens they linked, their one-time sign-in links
(`gateway.ledger.web_schema`); and an index on the movements' time for revenue by period.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "drivers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        _at("created_at"),
    )
    op.create_table(
        "driver_cards",
        sa.Column("card_token", sa.String(64), primary_key=True),
        sa.Column("driver_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), server_default="", nullable=False),
        _at("created_at"),
    )
    op.create_index("ix_driver_cards_driver_id", "driver_cards", ["driver_id"])
    op.create_table(
        "sign_in_links",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        _at("expires_at"),
        _at("used_at", nullable=True),
    )
    op.create_index("movements_at", "movements", ["at"])


def downgrade() -> None:
    op.drop_index("movements_at", "movements")
    for table in ("sign_in_links", "driver_cards", "drivers"):
        op.drop_table(table)
