"""Pay-by-phone codes: the one-time code in a kiosk's QR and what the kiosk offers with it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pay_codes",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("offer", sa.Text(), nullable=False),
        sa.Column("authorization_id", sa.String(64)),
        _at("created_at"),
        _at("expires_at"),
        _at("claimed_at", nullable=True),
    )
    op.create_index("pay_codes_terminal", "pay_codes", ["terminal_id", "state"])
    op.create_index("pay_codes_authorization", "pay_codes", ["authorization_id"])


def downgrade() -> None:
    op.drop_table("pay_codes")
