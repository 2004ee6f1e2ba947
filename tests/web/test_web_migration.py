"""The console's and portal's tables as migrations 0005-0008 create them are the tables the
code uses (`gateway.ledger.web_schema`), on both back-ends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.ledger import migrate, open_engine
from gateway.ledger.schema import metadata
from gateway.ledger.web_schema import (
    audit_log,
    driver_cards,
    drivers,
    operators,
    passkey_challenges,
    passkeys,
    sign_in_attempts,
    sign_in_links,
    station_tariffs,
    stations,
    tariffs,
    web_sessions,
)

WEB_TABLES = {
    t.name
    for t in (
        operators,
        web_sessions,
        sign_in_attempts,
        audit_log,
        stations,
        drivers,
        driver_cards,
        sign_in_links,
        tariffs,
        station_tariffs,
        passkeys,
        passkey_challenges,
    )
} | {"movements", "cpos", "invoices"}


def test_the_migrated_web_tables_match_the_code(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    def table_of(diff: object) -> str:
        item = diff[0] if isinstance(diff, list) else diff
        for part in item[1:] if isinstance(item, tuple) else ():
            table = getattr(part, "table", None)
            name = getattr(part, "name", None) or getattr(table, "name", None)
            if isinstance(part, str) and part in WEB_TABLES:
                return part
            if name in WEB_TABLES:
                return str(name)
        return ""

    ours = [d for d in diffs if table_of(d)]
    assert ours == []
