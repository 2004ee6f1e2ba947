"""The money path's statements, run straight on the database driver's cursor.

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
text), so what is stored and read back is what SQLAlchemy stores and reads. On PostgreSQL
the statement is sent with PostgreSQL's own `$n` placeholders on a psycopg `RawCursor`, so
psycopg neither parses it for placeholders nor reorders values at each execution (it caches
that parse only for statements under 4 KiB and 50 parameters: the revenue rollup's has 181,
and parsing it was a third of the money path's Python calls), and prepares it on the server
once it has run five times on a connection.

A row comes back as a named tuple (attributes by column name, `_mapping` as a dict), the
way callers use SQLAlchemy's rows. Errors are the driver's own exceptions (the money path
lets them propagate: the unit of work fails and none of it took effect).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from psycopg import RawCursor  # the gateway's PostgreSQL driver (setup.cfg, `gateway`)
from sqlalchemy.engine import Connection, Dialect

_CURSOR = "ev_cursor"  # the cached cursor, in the pooled connection's `info`

Processor = Callable[[Any], Any]


class _Compiled:
    """One statement compiled for one dialect: its SQL, how execution values become the
    driver's parameters, and how a result tuple becomes a row."""

    __slots__ = ("names", "positional", "procs", "results", "sql")

    def __init__(self, stmt: Any, keys: Sequence[str], returns: Sequence[Any], dialect: Dialect):
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) or None)
        if compiled.escaped_bind_names:  # pragma: no cover - our names need no escaping
            raise ValueError(f"bind names needing escapes: {compiled.escaped_bind_names}")
        self.sql: str | bytes = compiled.string
        self.positional = compiled.positiontup is not None
        self.names: tuple[str, ...] = tuple(compiled.positiontup or compiled.binds)
        if dialect.name == "postgresql":
            self.sql, self.names = _numbered(compiled.string)
            self.positional = True
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
        """Run it in `conn`'s transaction; the driver's cursor, positioned on the result."""
        compiled = self._compiled(conn.dialect)
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


def cursor_of(conn: Connection) -> Any:
    """The DB-API cursor of `conn`'s driver connection, made once per pooled connection and
    kept in its `info` (a statement's result is read before the next statement runs). On
    PostgreSQL a psycopg `RawCursor`: statements come with PostgreSQL's own `$n` placeholders
    (`_numbered`), so psycopg sends them as they are instead of parsing each one for its
    `%(name)s` placeholders (a parse it caches only for statements under 4 KiB and 50
    parameters) and reordering a dict of values at every execution."""
    fairy = conn.connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None:
        driver: Any = fairy.dbapi_connection
        cursor = RawCursor(driver) if conn.dialect.name == "postgresql" else driver.cursor()
        fairy.info[_CURSOR] = cursor
    return cursor


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
