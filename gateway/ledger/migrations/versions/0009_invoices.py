"""The station registry's operator and reading key, charge point operators, and invoices
(`gateway.ledger.invoice_schema`).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stations") as batch:
        batch.add_column(sa.Column("cpo_id", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("ocmf_public_key", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "cpos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("address", sa.String(256), nullable=False, server_default=""),
        sa.Column("vat_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("next_invoice", sa.Integer(), nullable=False, server_default="1"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cpo_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("buyer_name", sa.String(128), nullable=False, server_default=""),
        sa.Column("buyer_vat_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supersedes", sa.Integer()),
        sa.Column("superseded_by", sa.Integer()),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary()),
        sa.Column("pdf_sha256", sa.String(64)),
        sa.UniqueConstraint("cpo_id", "number", name="invoices_series"),
    )
    op.create_index("ix_invoices_authorization_id", "invoices", ["authorization_id"])


def downgrade() -> None:
    op.drop_table("invoices")
    op.drop_table("cpos")
    with op.batch_alter_table("stations") as batch:
        batch.drop_column("ocmf_public_key")
        batch.drop_column("cpo_id")
