"""The revenue rollup is written by roll-ups after the captures' transactions
(`gateway.ledger.rollup_pending`): each movement is in it exactly once, a report counts every
capture committed before it was asked for, and roll-ups running at once in several workers
never count a movement twice. On both back-ends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.jobs.rollup import RevenueRollup
from gateway.ledger import Ledger, migrate, open_engine
from gateway.ledger.revenue import revenue
from gateway.ledger.rollup import expected_rows, rebuild, stored_rows
from gateway.ledger.rollup_pending import catch_up, roll_up_pending
from gateway.ledger.schema import CAPTURED, movements

AT = datetime(2026, 3, 30, 9, 7, tzinfo=UTC)


def _clock() -> datetime:
    return AT


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _capture(ledger: Ledger, n: int, *, refund: int = 0) -> None:
    """A captured session of terminal K<n % 3> (its hold, its capture, a refund if given):
    recorded as the money steps record them, in a unit of the group commit."""
    aid = f"a{n:05d}"
    total = 1000 + n
    receipt = json.dumps({"total": total, "total_excl_vat": total - 100 - n % 7})
    with ledger.write() as conn:
        ledger.insert(
            conn,
            id=aid,
            terminal_id=f"K{n % 3}",
            status=CAPTURED,
            currency="EUR",
            amount_requested=5000,
            amount_authorized=5000,
            amount_captured=total,
            card_kind="payment",
            card_token="",
            card_brand=("visa", "mastercard")[n % 2],
            card_last4="",
            processor="simulated",
            receipt=receipt,
        )
        ledger.move(conn, aid, "hold", 5000, "EUR", step_key=f"hold:{aid}")
        ledger.move(conn, aid, "capture", total, "EUR", step_key=f"capture:{aid}")
        if refund:
            ledger.move(conn, aid, "refund", refund, "EUR", step_key=f"refund:{aid}")


def _unrolled(engine: Engine) -> int:
    with engine.connect() as conn:
        found = conn.scalar(
            sa.select(sa.func.count()).select_from(movements).where(~movements.c.rolled)
        )
    return int(found or 0)


def test_a_capture_waits_for_the_roll_up_and_a_report_rolls_up_first(engine: Engine) -> None:
    ledger = Ledger(engine, _clock)
    for n in range(5):
        _capture(ledger, n, refund=300 if n == 2 else 0)
    # Recorded, not yet in the rollup: the 5 captures and the refund wait for it (a hold is
    # never revenue: it owes the rollup nothing).
    assert _unrolled(engine) == 6
    with engine.connect() as conn:
        assert stored_rows(conn) == {}

    day = AT.replace(hour=0, minute=0)
    report = revenue(engine, day, day + timedelta(days=1), [day])
    # The report counted every capture committed before it was asked for.
    figures = report.totals["EUR"]
    assert (figures.sessions, figures.gross, figures.refunds) == (
        5,
        sum(1000 + n for n in range(5)),
        300,
    )
    assert _unrolled(engine) == 0
    with engine.connect() as conn:
        assert stored_rows(conn) == expected_rows(conn)
    # Nothing is pending: a roll-up takes nothing and changes nothing.
    with engine.connect() as conn:
        before = stored_rows(conn)
    assert catch_up(engine) == 0
    with engine.connect() as conn:
        assert stored_rows(conn) == before


def test_a_roll_up_takes_at_most_its_batch_and_the_rest_next_time(engine: Engine) -> None:
    ledger = Ledger(engine, _clock)
    for n in range(4):
        _capture(ledger, n)
    with engine.begin() as conn:
        assert roll_up_pending(conn, limit=3) == 3
    assert _unrolled(engine) == 1
    with engine.begin() as conn:
        assert roll_up_pending(conn, limit=3) == 1
    with engine.connect() as conn:
        assert stored_rows(conn) == expected_rows(conn)


def test_roll_ups_in_several_workers_at_once_count_each_movement_once(db_url: str) -> None:
    """Four workers (an engine and group commit each) record captures and roll up at the same
    time; at the end the rollup is exactly the sum from scratch."""
    engines = [open_engine(db_url) for _ in range(4)]
    try:
        migrate(engines[0])
        errors: list[BaseException] = []
        start = threading.Barrier(len(engines))

        def worker(i: int, engine: Engine) -> None:
            try:
                ledger = Ledger(engine, _clock)
                start.wait()
                for n in range(i, 120, len(engines)):
                    _capture(ledger, n, refund=n % 5)
                    if n % 3 == 0:
                        catch_up(engine)
                catch_up(engine)
            except BaseException as exc:  # reported below, with the others'
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i, e)) for i, e in enumerate(engines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert _unrolled(engines[0]) == 0
        with engines[0].connect() as conn:
            stored, expected = stored_rows(conn), expected_rows(conn)
        assert stored == expected
        fleet_day = ("d", AT.replace(hour=0, minute=0), "all", "", "EUR")
        assert stored[fleet_day][0] == 120  # captures
    finally:
        for e in engines:
            e.dispose()


def test_a_ledger_from_before_the_roll_up_migrates_without_counting_twice(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    """Movements recorded while the rollup was written in each capture's transaction are in
    it already: the migration marks them rolled, and a roll-up adds nothing."""
    if db_url.startswith("postgresql"):  # `db_url` is a copy of a migrated database
        db_url = request.getfixturevalue("postgres").database()
    engine = open_engine(db_url)
    try:
        migrate(engine, to="0018")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO authorizations (id, terminal_id, status, currency,"
                    " amount_requested, amount_captured, card_kind, card_token, card_brand,"
                    " card_last4, processor, receipt, created_at, updated_at)"
                    " VALUES ('old', 'K1', 'captured', 'EUR', 5000, 1200, 'payment', '',"
                    " 'visa', '', 'simulated', :receipt, :at, :at)"
                ),
                {"receipt": json.dumps({"total": 1200, "total_excl_vat": 1000}), "at": AT},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO movements (authorization_id, kind, amount, currency,"
                    " step_key, at) VALUES ('old', 'capture', 1200, 'EUR', 'capture:old', :at)"
                ),
                {"at": AT},
            )
            rebuild(conn)  # as the old capture's transaction left it
            before = stored_rows(conn)
        assert before
        migrate(engine)
        assert _unrolled(engine) == 0
        assert catch_up(engine) == 0
        with engine.connect() as conn:
            assert stored_rows(conn) == before == expected_rows(conn)
    finally:
        engine.dispose()


def test_the_roll_up_job_rolls_up_without_a_report(engine: Engine) -> None:
    """The job (in one worker at a time, by its lease) keeps the rollup up to date on its
    own, with no report asked for."""
    ledger = Ledger(engine, _clock)
    for n in range(3):
        _capture(ledger, n, refund=100)
    job = RevenueRollup(ledger, every_s=60.0)
    job.round()
    assert job.runs == 1
    assert _unrolled(engine) == 0
    with engine.connect() as conn:
        assert stored_rows(conn) == expected_rows(conn)
