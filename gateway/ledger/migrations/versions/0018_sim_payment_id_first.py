"""The simulated processor's payment ids: unique per account with the id first.

`sim_payments_payment` was (account, payment_id). Every statement that finds a payment by its
reference also names its account (`account = $1 AND reference = $2`), and `account` was the
leading column of that index, so the planner could use it for the account alone: a generic
plan made while the table was small, then kept by the connection's prepared statement,
scanned every payment of the account to find one (measured on PostgreSQL: a capture's UPDATE
read 545,000 index entries for 1,000 captures, 140-230 µs a capture and growing with the
table). With the id first, no index has `account` alone as a usable prefix: a reference is
found by the primary key, an id by this index's whole key.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot drop a constraint in place: the batch copies the table (recreate).
    with op.batch_alter_table("sim_payments") as batch:
        batch.drop_constraint("sim_payments_payment", type_="unique")
        batch.create_unique_constraint("sim_payments_payment", ["payment_id", "account"])


def downgrade() -> None:
    with op.batch_alter_table("sim_payments") as batch:
        batch.drop_constraint("sim_payments_payment", type_="unique")
        batch.create_unique_constraint("sim_payments_payment", ["account", "payment_id"])
