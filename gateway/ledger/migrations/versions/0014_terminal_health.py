"""What each terminal's events say of it now (`terminal_health`, `terminal_faults`), kept as
events arrive; filled from the events stored so far.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.ledger.terminal_health import rebuild

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "terminal_health",
        sa.Column("terminal_id", sa.String(64), primary_key=True),
        sa.Column("out_of_service", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "terminal_faults",
        sa.Column("terminal_id", sa.String(64), primary_key=True),
        sa.Column("fault", sa.Text(), primary_key=True),
    )
    # In the migration's transaction: no event lands between the replay and the first note.
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("terminal_faults")
    op.drop_table("terminal_health")
