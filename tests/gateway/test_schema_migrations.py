"""The numbered migrations build exactly the schema the code reads (`gateway/ledger/schema.py`),
on both back-ends: a table, column or index added to one and not the other is caught here."""

from __future__ import annotations

import re

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.ledger import migrate, open_engine
from gateway.ledger.database import MIGRATIONS
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


def test_the_migrations_are_one_numbered_line() -> None:
    """Each migration names the one before it and its number is its file's: two engineers
    landing the same number (a rebase shows no conflict, the file names differ) fork the
    history, and the gateway cannot tell which schema is newest."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1, script.get_heads()
    chain = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    for revision in chain:
        assert revision.path is not None
        number = re.match(r"(\d{4})_", revision.path.rsplit("/", 1)[-1])
        assert number is not None and number.group(1) == revision.revision, revision.path
