"""The gateway's ledger: authorizations, their money movements, receipts and idempotency keys,
over SQLAlchemy Core (SQLite embedded, PostgreSQL in production) with Alembic migrations.

Every state change of an authorization is one transaction that also appends a row to
`movements`, so the ledger can be audited: each hold ends in exactly one capture or one
release.
"""

from gateway.ledger.database import (
    SchemaMismatch,
    check_schema,
    current_revision,
    database_url,
    head_revision,
    migrate,
    open_engine,
)
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.invoice_schema import invoices  # the invoices' tables join the metadata
from gateway.ledger.schema import authorizations, events, meter_readings, movements
from gateway.ledger.store import IDEMPOTENCY_RETENTION, Ledger, now
from gateway.ledger.web_schema import operators  # the console's tables join the metadata

__all__ = [
    "IDEMPOTENCY_RETENTION",
    "Ledger",
    "SchemaMismatch",
    "StoredAnswer",
    "authorizations",
    "check_schema",
    "current_revision",
    "database_url",
    "events",
    "head_revision",
    "invoices",
    "meter_readings",
    "migrate",
    "movements",
    "now",
    "open_engine",
    "operators",
]
