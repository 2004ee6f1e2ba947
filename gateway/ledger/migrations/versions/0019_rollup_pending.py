"""Movements wait to be rolled up (`movements.rolled`): the revenue rollup is written by a
roll-up after the capture's transaction, not in it (`gateway.ledger.rollup_pending`).

Every movement recorded so far is in the rollup already (it was written in the same
transaction), so they are all marked rolled. New ones are recorded unrolled (the column's
default); a partial index holds just those, so the roll-up finds them without a scan.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.ledger.rollup_pending import roll_up_pending

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "movements",
        sa.Column("rolled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(sa.text("UPDATE movements SET rolled = true"))
    op.create_index(
        "movements_unrolled",
        "movements",
        ["seq"],
        postgresql_where=sa.text("NOT rolled"),
        sqlite_where=sa.text("NOT rolled"),
    )


def downgrade() -> None:
    # Whatever was not rolled up yet is written first: the rollup is complete again.
    conn = op.get_bind()
    while roll_up_pending(conn):
        pass
    op.drop_index("movements_unrolled", table_name="movements")
    with op.batch_alter_table("movements") as batch:
        batch.drop_column("rolled")
