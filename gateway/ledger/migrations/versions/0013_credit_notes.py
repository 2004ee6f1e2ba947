"""Credit notes: an invoice row may credit another for one refund (`invoices.credits`,
`invoices.refund_seq`), at most once per refund and invoice.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("credits", sa.Integer(), nullable=True))
    op.add_column("invoices", sa.Column("refund_seq", sa.BigInteger(), nullable=True))
    op.create_index("invoices_credit_once", "invoices", ["credits", "refund_seq"], unique=True)


def downgrade() -> None:
    op.drop_index("invoices_credit_once", table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("refund_seq")
        batch.drop_column("credits")
