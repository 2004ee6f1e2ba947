"""Every gateway test runs on both back-ends: SQLite (the embedded default) and a real
PostgreSQL server (`tests/postgres.py`). Tests take `db_url`; `pytest -k postgresql` selects
the PostgreSQL runs. `gw` is a gateway served on 127.0.0.1 with its defaults (a module that
needs another one defines its own `gw`); `tls_terminals` is a gateway over mutual TLS with
two kiosks' certificates (`terminal_tls`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import migrate, open_engine
from gateway.server import EmbeddedGateway
from tests.gateway.terminal_tls import TlsTerminals, tls_terminals_at
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


@pytest.fixture
def gw(db_url: str) -> Iterator[EmbeddedGateway]:
    gateway = EmbeddedGateway(db_url=db_url)
    gateway.up()
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture
def tls_terminals(db_url: str, tmp_path: Path) -> Iterator[TlsTerminals]:
    with tls_terminals_at(db_url, tmp_path / "pki") as terminals:
        yield terminals
