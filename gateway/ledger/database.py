"""Opening the gateway's database, migrating it, and refusing a schema this code does not know.

SQLite is the embedded default (the demo, `simulate`, a single-machine gateway); PostgreSQL
(psycopg 3, `postgresql+psycopg://…` or `postgresql://…`) is for production and many workers.
The schema is changed only by numbered Alembic migrations (`migrations/versions/NNNN_*.py`),
applied by `ev-terminal gateway migrate`; a serving gateway checks at start that the database
is at exactly the newest revision it knows and refuses to serve otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from gateway.ledger.schema import metadata

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 10_000


class SchemaMismatch(Exception):
    """The database is not at the schema revision this gateway was built for."""


def database_url(value: str) -> str:
    """A URL from the command line: a path means a SQLite file, `postgresql://` means psycopg 3."""
    if value.startswith("postgresql://"):
        return "postgresql+psycopg://" + value.removeprefix("postgresql://")
    if "://" in value:
        return value
    return f"sqlite:///{value}"


# PostgreSQL connections of one worker. A worker runs its synchronous routes in anyio's
# thread pool (40 threads), so it never needs more than 40 at once: a thread never waits for
# one. Connections beyond the kept ones are closed when given back, and each new one is a new
# PostgreSQL server process (its fork and its catalog caches: 1-2 ms of server CPU, more
# than a whole money request's statements), so as many are kept as a busy worker uses at once
# (16 requests in flight against a pool of 10 churned a backend every few requests). The
# server's max_connections must cover workers x POOL_THREADS on every machine (docs/
# operations.md).
POOL_THREADS = 40
POOL_KEPT = 20


def open_engine(url: str) -> Engine:
    """An engine for `url` (no schema change). SQLite gets WAL, synchronous=FULL and
    `BEGIN IMMEDIATE` transactions, so two processes on one file serialise their writes at
    the start of a transaction instead of failing at its first write (SQLITE_BUSY on a lock
    upgrade is not retried by the busy handler)."""
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        # BEGIN IMMEDIATE as the dialect's own begin, not a "begin" event listener: any
        # engine event makes SQLAlchemy dispatch events around every statement (about a
        # tenth of the money path's CPU).
        engine.dialect.do_begin = _begin_immediate  # type: ignore[method-assign,assignment]
        return engine
    # psycopg prepares no statement of its own (`prepare_threshold` None): at every rollback
    # it forgets those it prepared and sends DEALLOCATE ALL, which also drops the money
    # path's statements, prepared once per connection (`statements._Session`).
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_KEPT,
        max_overflow=POOL_THREADS - POOL_KEPT,
        connect_args={"prepare_threshold": None},
    )


def _begin_immediate(dbapi_conn: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
    finally:
        cursor.close()


def unusable(url: str) -> str | None:
    """Why a database URL cannot be used (one line), or None when a connection opens."""
    try:
        engine = open_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        return f"not a database URL this gateway knows ({type(exc).__name__})"
    try:
        with engine.connect():
            return None
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        return first[0] if first else type(exc).__name__
    finally:
        engine.dispose()


def _script() -> tuple[Config, ScriptDirectory]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config, ScriptDirectory.from_config(config)


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = _script()[1].get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, to: str = "head") -> tuple[str | None, str]:
    """Apply every migration the database lacks, up to revision `to` (a test builds a ledger
    as an older gateway kept it); (revision before, revision after)."""
    config, script = _script()
    before = current_revision(engine)
    if before is not None and before not in {s.revision for s in script.walk_revisions()}:
        raise SchemaMismatch(f"database schema {before} is newer than this gateway knows")

    def upgrade(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(to, rev)

    with (
        engine.begin() as conn,
        EnvironmentContext(config, script, fn=upgrade, destination_rev=to) as env,
    ):
        env.configure(connection=conn, target_metadata=metadata, transactional_ddl=True)
        with env.begin_transaction():
            env.run_migrations()
    return before, head_revision() if to == "head" else to


def check_schema(engine: Engine) -> None:
    """Refuse (SchemaMismatch) a database that is not at this code's head revision."""
    current, head = current_revision(engine), head_revision()
    if current is None:
        raise SchemaMismatch(
            "the database has no gateway schema: run `ev-terminal gateway migrate` first"
        )
    if current != head:
        known = {s.revision for s in _script()[1].walk_revisions()}
        if current in known:
            raise SchemaMismatch(
                f"database schema {current} is older than {head}: run `ev-terminal gateway migrate`"
            )
        raise SchemaMismatch(f"database schema {current} is unknown to this gateway ({head})")
