"""Commands for terminals (pay by phone): start a session paid on the web, stop one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "kiosk_commands",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("body", sa.Text(), nullable=False),
        _at("expires_at"),
        _at("delivered_at", nullable=True),
        _at("answered_at", nullable=True),
        _at("created_at"),
    )
    op.create_index("kiosk_commands_waiting", "kiosk_commands", ["terminal_id", "state"])
    op.create_index("kiosk_commands_authorization", "kiosk_commands", ["authorization_id"])


def downgrade() -> None:
    op.drop_table("kiosk_commands")
