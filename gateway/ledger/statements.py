"""The money path's statements, run straight on the database driver.

A money request runs about twenty small statements. Through SQLAlchemy's `Connection.execute`
each costs 100-150 µs of Python (the compiled-statement cache look-up, the execution
context, the result's metadata; and psycopg builds a description object per column of every
result, which SQLAlchemy reads): three to four times the driver's own cost for the same
statement. Measured on PostgreSQL: SELECT of one authorization row 150 µs through
SQLAlchemy, 37 µs on the driver's cursor.

So the hot statements are written with SQLAlchemy Core as everywhere else, compiled once per
dialect by SQLAlchemy (the same SQL it would send, bind casts included), and executed on the
DB-API cursor of the SQLAlchemy connection they are given: inside that connection's
transaction, exactly as `conn.execute` would run them. Values go through the column types'
own bind processors and rows through their result processors (SQLite keeps datetimes as
text), so what is stored and read back is what SQLAlchemy stores and reads. On SQLite they
run on the DB-API cursor. On PostgreSQL they go one level lower, through libpq itself
(`_Session`): written with PostgreSQL's own `$n` placeholders (no placeholder parse at each
execution: psycopg caches that parse only for statements under 4 KiB and 50 parameters, and
the revenue rollup's has 181), prepared on the server once per connection, and run by
libpq's blocking call, which waits for the answer in C with the GIL released instead of in
a psycopg cursor's Python wait loop.

A row comes back as a named tuple (attributes by column name, `_mapping` as a dict), the
way callers use SQLAlchemy's rows. Errors are the driver's own exceptions (the money path
lets them propagate: the unit of work fails and none of it took effect).
"""

from __future__ import annotations

import itertools
import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

# The gateway's PostgreSQL driver (setup.cfg, `gateway`).
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from sqlalchemy.engine import Connection, Dialect

_CURSOR = "ev_cursor"  # the cached cursor, in the pooled connection's `info`
_SESSION = "ev_session"  # a PostgreSQL connection's `_Session`, in the same `info`
_NAMES = itertools.count(1)  # names of the statements prepared on PostgreSQL

Processor = Callable[[Any], Any]


class _Compiled:
    """One statement compiled for one dialect: its SQL, how execution values become the
    driver's parameters, and how a result tuple becomes a row."""

    __slots__ = ("formats", "name", "names", "positional", "procs", "results", "sql")

    def __init__(self, stmt: Any, keys: Sequence[str], returns: Sequence[Any], dialect: Dialect):
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) or None)
        if compiled.escaped_bind_names:  # pragma: no cover - our names need no escaping
            raise ValueError(f"bind names needing escapes: {compiled.escaped_bind_names}")
        self.sql: str | bytes = compiled.string
        self.positional = compiled.positiontup is not None
        self.names: tuple[str, ...] = tuple(compiled.positiontup or compiled.binds)
        self.name = b""
        if dialect.name == "postgresql":
            self.sql, self.names = _numbered(compiled.string)
            self.positional = True
            self.name = b"ev_%d" % next(_NAMES)
        self.formats = [PyFormat.TEXT] * len(self.names)
        procs: dict[str, Processor] = {}
        for name in self.names:
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                procs[name] = proc
        self.procs = procs
        self.results: tuple[tuple[int, Processor], ...] = tuple(
            (i, proc)
            for i, column in enumerate(returns)
            if (proc := column.type.dialect_impl(dialect).result_processor(dialect, None))
            is not None
        )

    def parameters(self, values: Mapping[str, Any]) -> Any:
        procs = self.procs
        if self.positional:
            return tuple(
                procs[name](values[name]) if name in procs else values[name] for name in self.names
            )
        if not procs:
            return values
        return {
            name: procs[name](values[name]) if name in procs else values[name]
            for name in self.names
        }


class Statement:
    """A statement for the driver's cursor. `stmt` is a SQLAlchemy statement, or a function
    of the dialect's name that builds one (an INSERT … ON CONFLICT is dialect-specific);
    `returns` are the columns its rows hold, in order; `keys` the columns an INSERT or
    UPDATE sets from the execution's values (they become binds named as the columns)."""

    def __init__(
        self,
        stmt: Any,
        *,
        returns: Sequence[Any] = (),
        keys: Sequence[str] = (),
        name: str = "Row",
    ) -> None:
        self.stmt = stmt
        self.keys = tuple(keys)
        self.returns = tuple(returns)
        self.row = _row_class(name, [c.key for c in self.returns])
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            stmt = self.stmt(dialect.name) if callable(self.stmt) else self.stmt
            found = _Compiled(stmt, self.keys, self.returns, dialect)
            self._by_dialect[dialect.name] = found
        return found

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        """Run it in `conn`'s transaction; its result (`fetchone()`, `rowcount`): on SQLite
        the driver's cursor, on PostgreSQL `_Result`."""
        compiled = self._compiled(conn.dialect)
        if compiled.name:
            return _session(conn).execute(compiled, compiled.parameters(values))
        cursor = cursor_of(conn)
        cursor.execute(compiled.sql, compiled.parameters(values))
        return cursor

    def first(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        """The first row (a named tuple of `returns`), or None."""
        cursor = self.execute(conn, values)
        found = cursor.fetchone()
        if found is None:
            return None
        results = self._by_dialect[conn.dialect.name].results
        if results:
            found = list(found)
            for i, proc in results:
                found[i] = proc(found[i])
        return self.row._make(found)

    def rowcount(self, conn: Connection, values: Mapping[str, Any]) -> int:
        """How many rows the statement changed."""
        return int(self.execute(conn, values).rowcount)


def command(conn: Connection, sql: str) -> None:
    """Run a statement with no parameters and no result (a SAVEPOINT, a COMMIT) the way
    `Statement.execute` runs one, in `conn`'s transaction."""
    if conn.dialect.name == "postgresql":
        _session(conn).command(sql.encode())
    else:
        cursor_of(conn).execute(sql)


def commit_transaction(conn: Connection) -> None:
    """End `conn`'s transaction with a COMMIT sent as `command` sends it; SQLAlchemy's
    commit that follows then finds nothing to do on PostgreSQL (the driver's commit sends
    nothing when no transaction is open). Elsewhere, nothing: SQLAlchemy's commit does it."""
    if conn.dialect.name == "postgresql":
        _session(conn).commit()


def cursor_of(conn: Connection) -> Any:
    """The DB-API cursor of `conn`'s driver connection (SQLite), made once per pooled
    connection and kept in its `info` (a statement's result is read before the next
    statement runs)."""
    fairy = conn.connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None:
        driver: Any = fairy.dbapi_connection
        cursor = driver.cursor()
        fairy.info[_CURSOR] = cursor
    return cursor


class _Result:
    """A PostgreSQL statement's rows and row count, read at once (`Statement.execute`)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows


_IDLE = pq.TransactionStatus.IDLE
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK


class _Session:
    """The money path's statements on one PostgreSQL connection, straight through libpq
    (psycopg's `pq` layer) rather than a psycopg cursor.

    Why: a psycopg cursor waits for each answer in Python (its non-blocking generators poll
    the socket, read, poll again), which costs about 30 µs of CPU and doubles a statement's
    round trip on a busy machine; libpq's blocking `PQexecPrepared` waits in C with the GIL
    released. Measured on one connection, a SELECT of one row by its key: 115 µs wall and
    33 µs CPU through a psycopg cursor, 59 µs and 15 µs this way.

    What psycopg's cursor did for these statements is done here the same way: each statement
    is prepared once per connection (named `ev_<n>`; prepared statements belong to the
    server session and survive a rollback; a reconnected connection comes with a new pool
    `info`, so it prepares again); values are dumped and rows loaded by psycopg's own
    `Transformer` (text format, as a cursor does by default), so what is stored and read back
    is unchanged; a transaction is begun as psycopg begins it (a BEGIN when none is open and
    the connection is not in autocommit); an error is psycopg's own exception for the
    server's SQLSTATE. The connection is used by one thread at a time (a pool checkout), as
    with the cursor."""

    __slots__ = ("driver", "encoding", "pgconn", "prepared", "tx")

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.pgconn = driver.pgconn
        self.tx = Transformer(driver)
        self.encoding = driver.info.encoding
        self.prepared: set[bytes] = set()

    def execute(self, compiled: _Compiled, params: Sequence[Any]) -> _Result:
        pgconn = self.pgconn
        self._begin()
        name = compiled.name
        if name not in self.prepared:
            assert isinstance(compiled.sql, bytes)
            self._check(pgconn.prepare(name, compiled.sql))
            self.prepared.add(name)
        tx = self.tx
        res = pgconn.exec_prepared(name, tx.dump_sequence(params, compiled.formats))
        status = res.status
        if status == _TUPLES_OK:
            tx.set_pgresult(res)
            rows = tx.load_rows(0, res.ntuples, tuple)
        elif status == _COMMAND_OK:
            rows = []
        else:
            raise self._error(res)
        count = res.command_tuples
        return _Result(rows, -1 if count is None else count)

    def command(self, sql: bytes) -> None:
        self._begin()
        self._check(self.pgconn.exec_(sql))

    def commit(self) -> None:
        if self.pgconn.transaction_status != _IDLE:
            self._check(self.pgconn.exec_(b"COMMIT"))

    def _begin(self) -> None:
        if self.pgconn.transaction_status == _IDLE and not self.driver.autocommit:
            self._check(self.pgconn.exec_(b"BEGIN"))

    def _check(self, res: Any) -> None:
        if res.status not in (_COMMAND_OK, _TUPLES_OK):
            raise self._error(res)

    def _error(self, res: Any) -> Exception:
        return pg_errors.error_from_result(res, encoding=self.encoding)


def _session(conn: Connection) -> _Session:
    fairy = conn.connection
    session = fairy.info.get(_SESSION)
    if session is None:
        session = fairy.info[_SESSION] = _Session(fairy.dbapi_connection)
    return session


_PYFORMAT = re.compile(r"%\(([^)]+)\)s|%%")


def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """A statement compiled for psycopg (`%(name)s` placeholders, `%%` for a percent sign) in
    PostgreSQL's own form: `$1`, `$2`… numbered by first appearance (a name used twice is one
    parameter), and the names in that order."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names[name] = len(names) + 1
        return f"${names[name]}"

    return _PYFORMAT.sub(number, sql).encode(), tuple(names)


def _mapping(row: Any) -> dict[str, Any]:
    return dict(row._asdict())


def _row_class(name: str, fields: list[str]) -> Any:
    """A named tuple of `fields` that also answers `_mapping`, as SQLAlchemy's rows do."""
    base = namedtuple(name, fields)  # type: ignore[misc]  # fields known at run time only
    return type(name, (base,), {"__slots__": (), "_mapping": property(_mapping)})


def columns(table: sa.Table, *names: str) -> list[sa.Column[Any]]:
    """The named columns of `table` (all of them when no name is given)."""
    return [table.c[n] for n in names] if names else list(table.c)
