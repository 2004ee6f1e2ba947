"""Group commit (`gateway.ledger.batches`): units that wait share one commit, each unit is
atomic on its own, and none returns before what it wrote is committed. Run on SQLite and
PostgreSQL (`db_url`), with real threads on one engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger import open_engine
from gateway.ledger.batches import BatchFailed, GroupCommit, writer_for

metadata = sa.MetaData()
rows = sa.Table("gc_rows", metadata, sa.Column("n", sa.Integer, primary_key=True))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _committed(engine: Engine) -> set[int]:
    """What another connection sees (only committed rows)."""
    with engine.connect() as conn:
        return {r.n for r in conn.execute(sa.select(rows.c.n))}


def _queued(writer: GroupCommit, count: int) -> bool:
    return len(writer._queue) == count


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_units_that_wait_share_one_commit_and_each_returns_committed(engine: Engine) -> None:
    writer = GroupCommit(engine)
    inside = threading.Event()
    release = threading.Event()
    seen_after: dict[int, bool] = {}

    def first() -> None:
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=0))
            inside.set()
            release.wait(10)
        seen_after[0] = 0 in _committed(engine)

    def later(n: int) -> None:
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=n))
        seen_after[n] = n in _committed(engine)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert inside.wait(10)
    for n in range(1, 9):
        thread = threading.Thread(target=later, args=(n,))
        thread.start()
        threads.append(thread)
    _wait_for(lambda: len(writer._queue) == 8, "eight units queued behind the first")
    release.set()
    for thread in threads:
        thread.join(10)
    assert _committed(engine) == set(range(9))
    assert seen_after == dict.fromkeys(range(9), True)  # nobody returned before its commit
    # The first unit's batch took everyone queued behind it: one commit for nine units.
    assert (writer.commits, writer.committed_units) == (1, 9)


def test_a_unit_that_raises_undoes_only_its_own_statements(engine: Engine) -> None:
    writer = GroupCommit(engine)
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=1))
            inside.set()
            release.wait(10)

    def failing() -> None:
        try:
            with writer.unit() as conn:
                conn.execute(rows.insert().values(n=2))
                raise ValueError("refused")
        except ValueError as exc:
            errors.append(exc)

    def duplicate() -> None:  # a database error inside a unit, in the same batch
        try:
            with writer.unit() as conn:
                conn.execute(rows.insert().values(n=3))
                conn.execute(rows.insert().values(n=1))
        except sa.exc.IntegrityError as exc:
            errors.append(exc)

    def good() -> None:
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=4))

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert inside.wait(10)
    for f in (failing, duplicate, good):
        thread = threading.Thread(target=f)
        thread.start()
        threads.append(thread)
        _wait_for(partial(_queued, writer, len(threads) - 1), "the unit queued")
    release.set()
    for thread in threads:
        thread.join(10)
    assert _committed(engine) == {1, 4}
    assert sorted(type(e).__name__ for e in errors) == ["IntegrityError", "ValueError"]
    assert (writer.commits, writer.committed_units) == (1, 4)


def test_a_lone_unit_that_raises_commits_nothing(engine: Engine) -> None:
    writer = GroupCommit(engine)

    def refused() -> None:
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=7))
            raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        refused()
    with writer.unit() as conn:
        conn.execute(rows.insert().values(n=8))
    assert _committed(engine) == {8}
    assert writer.commits == 1


def test_a_unit_cannot_open_another(engine: Engine) -> None:
    writer = GroupCommit(engine)
    with pytest.raises(RuntimeError, match="cannot open another"), writer.unit(), writer.unit():
        pass
    with writer.unit() as conn:  # and the writer is usable afterwards
        conn.execute(rows.insert().values(n=1))
    assert _committed(engine) == {1}


def test_the_engine_has_one_writer(engine: Engine) -> None:
    assert writer_for(engine) is writer_for(engine)
    other = open_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        assert writer_for(other) is not writer_for(engine)
    finally:
        other.dispose()


def test_on_postgresql_the_writer_keeps_its_connection_until_the_engine_is_disposed(
    engine: Engine,
) -> None:
    writer = GroupCommit(engine)
    for n in (1, 2):
        with writer.unit() as conn:
            conn.execute(rows.insert().values(n=n))
    kept = engine.dialect.name == "postgresql"
    pool: sa.pool.QueuePool = engine.pool  # type: ignore[assignment]
    assert pool.checkedout() == (1 if kept else 0)
    engine.dispose()  # gives the kept connection back: nothing left checked out
    assert pool.checkedout() == 0
    with writer.unit() as conn:  # and the writer goes on with a new one
        conn.execute(rows.insert().values(n=3))
    assert _committed(engine) == {1, 2, 3}


def test_a_unit_without_a_savepoint_that_raises_loses_its_whole_batch(engine: Engine) -> None:
    writer = GroupCommit(engine)
    inside = threading.Event()
    release = threading.Event()
    raised: dict[str, str] = {}

    def first() -> None:
        try:
            with writer.unit() as conn:
                conn.execute(rows.insert().values(n=1))
                inside.set()
                release.wait(10)
        except BatchFailed:
            raised["first"] = "BatchFailed"

    def broken() -> None:
        try:
            with writer.unit(savepoint=False) as conn:
                conn.execute(rows.insert().values(n=2))
                raise ValueError("broken")
        except ValueError:
            raised["broken"] = "ValueError"

    def later() -> None:
        try:
            with writer.unit() as conn:
                conn.execute(rows.insert().values(n=3))
        except BatchFailed:
            raised["later"] = "BatchFailed"

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert inside.wait(10)
    for target in (broken, later):
        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)
        _wait_for(partial(_queued, writer, len(threads) - 1), "the unit queued")
    release.set()
    for thread in threads:
        thread.join(10)
    # The broken unit raises its own error; the unit before it in the batch lost its
    # transaction; the one after it ran in the next batch, which committed.
    assert raised == {"first": "BatchFailed", "broken": "ValueError"}
    assert _committed(engine) == {3}
    with writer.unit(savepoint=False) as conn:  # one that succeeds is like any other
        conn.execute(rows.insert().values(n=4))
    assert _committed(engine) == {3, 4}
