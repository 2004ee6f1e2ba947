"""The numbered migrations build exactly the schema the code reads (`gateway/ledger/schema.py`),
on both back-ends: a table, column or index added to one and not the other is caught here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.ledger import migrate, open_engine
from gateway.ledger.schema import metadata


def test_the_migrations_make_the_schema_the_code_reads(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert differences == []
