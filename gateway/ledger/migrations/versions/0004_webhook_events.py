"""Processors' notifications (webhooks) taken, by the processor's own event id, and an index
to find an authorization by the processor's reference.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("processor", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("authorization_id", sa.String(64)),
        sa.Column("effect", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "authorizations_processor_ref",
        "authorizations",
        ["processor", "merchant_account", "processor_ref"],
    )


def downgrade() -> None:
    op.drop_index("authorizations_processor_ref", table_name="authorizations")
    op.drop_table("webhook_events")
