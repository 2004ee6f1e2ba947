"""The initial schema: authorizations with their in-flight processor step, movements, scoped
idempotency keys, events, signed readings, token lists, seen KSNs, job leases and the
simulated processor's books.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "authorizations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_requested", sa.BigInteger(), nullable=False),
        sa.Column("amount_authorized", sa.BigInteger()),
        sa.Column("amount_captured", sa.BigInteger()),
        sa.Column("amount_refunded", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("card_kind", sa.String(16), nullable=False),
        sa.Column("card_token", sa.String(64), nullable=False),
        sa.Column("card_brand", sa.String(32), nullable=False),
        sa.Column("card_last4", sa.String(4), nullable=False),
        sa.Column("processor", sa.String(32), server_default="", nullable=False),
        sa.Column("merchant_account", sa.String(64), server_default="", nullable=False),
        sa.Column("processor_ref", sa.String(128)),
        sa.Column("decline_reason", sa.String(64)),
        sa.Column("energy_wh", sa.BigInteger()),
        sa.Column("receipt_id", sa.String(32), unique=True),
        sa.Column("receipt", sa.Text()),
        sa.Column("void_reason", sa.String(64)),
        sa.Column("op", sa.String(16)),
        sa.Column("op_key", sa.String(200)),
        sa.Column("op_amount", sa.BigInteger()),
        sa.Column("op_state", sa.String(16)),
        _at("op_started_at", nullable=True),
        sa.Column("op_detail", sa.Text()),
        sa.Column("flag", sa.String(32)),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index("authorizations_open", "authorizations", ["status", "op"])
    op.create_index("ix_authorizations_card_token", "authorizations", ["card_token"])
    op.create_index("ix_authorizations_terminal_id", "authorizations", ["terminal_id"])
    op.create_table(
        "movements",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("step_key", sa.String(200), nullable=False),
        _at("at"),
        sa.UniqueConstraint("authorization_id", "kind", "step_key", name="movements_once"),
    )
    op.create_index("ix_movements_authorization_id", "movements", ["authorization_id"])
    op.create_table(
        "idempotency",
        sa.Column("caller", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        _at("locked_at", nullable=True),
        sa.Column("status_code", sa.Integer()),
        sa.Column("response", sa.Text()),
        _at("created_at"),
    )
    op.create_index("ix_idempotency_created_at", "idempotency", ["created_at"])
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _at("at"),
        sa.UniqueConstraint("terminal_id", "key", name="events_terminal_key"),
    )
    op.create_table(
        "meter_readings",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ocmf", sa.Text(), nullable=False),
        sa.Column("ocmf_sha256", sa.String(64), nullable=False, unique=True),
        _at("received_at"),
    )
    op.create_index("ix_meter_readings_authorization_id", "meter_readings", ["authorization_id"])
    op.create_table(
        "token_lists",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("list", sa.String(8), nullable=False),
        _at("at"),
    )
    op.create_table(
        "seen_ksns",
        sa.Column("ksn", sa.String(24), primary_key=True),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        _at("at"),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        _at("expires_at"),
    )
    op.create_table(
        "sim_payments",
        sa.Column("reference", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        _at("created_at"),
        sa.UniqueConstraint("account", "payment_id", name="sim_payments_payment"),
    )
    op.create_table(
        "sim_requests",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        _at("at"),
    )


def downgrade() -> None:
    for table in (
        "sim_requests",
        "sim_payments",
        "job_leases",
        "seen_ksns",
        "token_lists",
        "meter_readings",
        "events",
        "idempotency",
        "movements",
        "authorizations",
    ):
        op.drop_table(table)
