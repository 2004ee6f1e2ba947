"""Every gateway test runs on both back-ends: SQLite (the embedded default) and a real
PostgreSQL server (`tests/postgres.py`). Tests take `db_url`; `pytest -k postgresql` selects
the PostgreSQL runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import migrate, open_engine
from tests.postgres import PostgresServer, running_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from running_server()


@pytest.fixture(scope="session")
def gateway_template(postgres: PostgresServer) -> str:
    """A database migrated once to the gateway's schema; each test copies it (fast)."""
    url = postgres.database()
    engine = open_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database(template=request.getfixturevalue("gateway_template"))
