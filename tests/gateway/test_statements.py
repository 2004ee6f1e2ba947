"""The money path's statements on the driver's cursor (`gateway.ledger.statements`) store and
read exactly what SQLAlchemy stores and reads, on both back-ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger import open_engine
from gateway.ledger.statements import Statement, columns

metadata = sa.MetaData()
things = sa.Table(
    "st_things",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text),
)

INSERT = Statement(sa.insert(things), keys=("id", "amount", "at", "note"))
GET = Statement(
    sa.select(things).where(things.c.id == sa.bindparam("_id")),
    returns=columns(things),
    name="Thing",
)
SET_NOTE = Statement(
    sa.update(things).where(things.c.id == sa.bindparam("_id"), things.c.at == sa.bindparam("_at")),
    keys=("note",),
)
AT = datetime(2026, 1, 15, 9, 45, 12, 345678, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def test_a_row_written_on_the_driver_reads_back_through_sqlalchemy_unchanged(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": "a", "amount": 10**12, "at": AT, "note": None})
    with engine.connect() as conn:
        row = conn.execute(sa.select(things)).one()
    assert (row.id, row.amount, _aware(row.at), row.note) == ("a", 10**12, AT, None)


def test_a_row_written_through_sqlalchemy_reads_back_on_the_driver_unchanged(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(things).values(id="b", amount=5, at=AT, note="x\u00e9"))
    with engine.connect() as conn:
        row = GET.first(conn, {"_id": "b"})
        missing = GET.first(conn, {"_id": "nope"})
    assert (row.id, row.amount, _aware(row.at), row.note) == ("b", 5, AT, "x\u00e9")
    assert row._mapping == {"id": "b", "amount": 5, "at": row.at, "note": "x\u00e9"}
    assert missing is None


def test_a_datetime_compared_on_the_driver_matches_what_sqlalchemy_stored(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(things).values(id="c", amount=1, at=AT))
    with engine.begin() as conn:
        changed = SET_NOTE.rowcount(conn, {"_id": "c", "_at": AT, "note": "seen"})
        unchanged = SET_NOTE.rowcount(
            conn, {"_id": "c", "_at": AT.replace(microsecond=0), "note": "?"}
        )
    assert (changed, unchanged) == (1, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(things.c.note)).scalar_one() == "seen"


def test_statements_run_inside_the_callers_transaction(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin() as txn:
        INSERT.execute(conn, {"id": "d", "amount": 2, "at": AT, "note": None})
        assert GET.first(conn, {"_id": "d"}) is not None  # seen inside its own transaction
        txn.rollback()
    with engine.connect() as conn:
        assert GET.first(conn, {"_id": "d"}) is None  # and gone with it


# A bind used twice and a literal percent sign: on PostgreSQL the statement is sent with `$n`
# placeholders (`statements._numbered`), one parameter per name, `%%` back to `%`.
TWICE = Statement(
    sa.select(things.c.id, sa.literal_column("'5%'").label("pct"))
    .where(
        sa.or_(things.c.id == sa.bindparam("_id"), things.c.note == sa.bindparam("_id")),
        things.c.amount >= sa.bindparam("_least"),
    )
    .order_by(things.c.id),
    returns=[things.c.id, things.c.note],
    name="Twice",
)


def test_a_bind_used_twice_and_a_literal_percent_sign_run_on_the_driver(engine: Engine) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": "a", "amount": 5, "at": AT, "note": "b"})
        INSERT.execute(conn, {"id": "b", "amount": 7, "at": AT, "note": None})
        INSERT.execute(conn, {"id": "c", "amount": 1, "at": AT, "note": "b"})
        rows = TWICE.execute(conn, {"_id": "b", "_least": 2}).fetchall()
    assert [tuple(r) for r in rows] == [("a", "5%"), ("b", "5%")]


def test_a_refused_statement_raises_the_drivers_own_error_and_changes_nothing(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": "e", "amount": 3, "at": AT, "note": None})

    def change_then_insert_again() -> None:
        with engine.begin() as conn:
            assert SET_NOTE.rowcount(conn, {"_id": "e", "_at": AT, "note": "changed"}) == 1
            INSERT.execute(conn, {"id": "e", "amount": 4, "at": AT, "note": None})

    with pytest.raises(engine.dialect.dbapi.IntegrityError):
        change_then_insert_again()
    with engine.connect() as conn:
        row = GET.first(conn, {"_id": "e"})
    assert (row.amount, row.note) == (3, None)  # the UPDATE before the refusal rolled back


def test_a_connection_replaced_by_the_pool_runs_the_statements_again(engine: Engine) -> None:
    """On PostgreSQL each statement is prepared once per server session: a connection the
    pool opened anew (after an invalidation, as after a server restart) prepares again."""
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": "f", "amount": 5, "at": AT, "note": None})
        assert GET.first(conn, {"_id": "f"}) is not None
    with engine.connect() as conn:
        assert GET.first(conn, {"_id": "f"}) is not None
        conn.invalidate()  # the driver connection is closed; the pool's record opens a new one
    with engine.connect() as conn:
        assert GET.first(conn, {"_id": "f"}).amount == 5
        assert SET_NOTE.rowcount(conn, {"_id": "f", "_at": AT, "note": "again"}) == 1


def test_the_prepared_statements_outlive_a_rollback_on_their_connection(engine: Engine) -> None:
    """psycopg forgets the statements it prepared itself at every rollback and sends
    DEALLOCATE ALL, which would take the money path's prepared statements with them (a
    capture after a refused request on the same pooled connection answered "prepared
    statement does not exist"). The engine leaves preparing to the money path alone."""
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": "g", "amount": 6, "at": AT, "note": None})
    with engine.connect() as conn:
        assert GET.first(conn, {"_id": "g"}) is not None  # prepared on this connection
        for _ in range(6):  # a statement through SQLAlchemy, run often enough to be prepared
            conn.execute(sa.select(things.c.id).where(things.c.id == "g")).all()
        conn.rollback()
        conn.execute(sa.select(things.c.id).where(things.c.id == "g")).all()
        assert GET.first(conn, {"_id": "g"}).amount == 6
