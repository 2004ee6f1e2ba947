"""A crashed and restarted gateway at every step of a session: the session settles exactly
once, on both back-ends. `gateway restart` drops the embedded gateway abruptly (connections
cut, nothing but what was committed kept) and starts a new one on the same database."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.server import EmbeddedGateway
from launcher.simulate import run_script
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees, assert_processor_agrees
from tests.test_sessions import EXPECTED_45M

SESSION = [
    "expect idle",
    "tap visa",
    "expect plug-in",
    "plug",
    "ev charge",
    "expect charging",
    "wait 45m",
    "tap visa",
    "expect receipt",
    "unplug",
    "wait 2m",
    "expect idle",
]
# Where a restart can land: after each step that is not an `expect`.
POINTS = [i for i, step in enumerate(SESSION) if not step.startswith("expect")]


@pytest.mark.parametrize("after", POINTS, ids=[f"after-{SESSION[i]}" for i in POINTS])
def test_a_gateway_restart_at_any_step_settles_the_session_once(
    config: Config, tmp_path: Path, db_url: str, after: int
) -> None:
    steps = [*SESSION[: after + 1], "gateway restart", *SESSION[after + 1 :], "wait 5m"]
    sim = run_script(config, "\n".join(steps), tmp_path / "sim", gateway_db=db_url)
    try:
        [result] = sim.results()
        assert result["settlement"] == "captured"
        assert {k: result[k] for k in EXPECTED_45M} == EXPECTED_45M
        assert_ledger_agrees(sim)
        assert_processor_agrees(
            sim.gateway.ledger.all_authorizations(), sim.gateway.processor.payments()
        )
        assert sim.gateway.processor.payments()[0]["captured"] == EXPECTED_45M["amount_captured"]
    finally:
        sim.close()


def test_a_restart_closes_the_connections_of_a_request_that_outlived_it(db_url: str) -> None:
    """A request's worker thread outlives an abrupt stop: it gives its connection back after
    the restart began, then runs its next transaction on the old engine. The first connection
    is closed once it is back, the second when the gateway closes, neither by the garbage
    collector later (an open connection on the database server until then)."""
    gateway = EmbeddedGateway(db_url=db_url)
    gateway.up()
    old = gateway.engine
    held = threading.Event()

    def request() -> tuple[Any, Any]:
        with old.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            first = conn.connection.dbapi_connection
            held.set()
            time.sleep(1.0)  # the request's work, going on while the gateway restarts
        deadline = time.monotonic() + 10
        while gateway.engine is old and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.engine is not old, "the gateway did not restart"
        with old.connect() as conn:  # the request's next transaction
            conn.execute(sa.text("SELECT 1"))
            second = conn.connection.dbapi_connection
        return first, second

    try:
        with ThreadPoolExecutor(1) as pool:
            returned = pool.submit(request)
            assert held.wait(5)
            gateway.restart()
            first, second = returned.result(15)
        assert _closed(first), "the connection given back after the restart began is open"
    finally:
        gateway.close()
    assert _closed(second), "the connection of the request's next transaction is open"


def _closed(raw: Any) -> bool:
    """Whether a DB-API connection is closed (psycopg says so; sqlite3 refuses a cursor)."""
    if hasattr(raw, "closed"):
        return bool(raw.closed)
    try:
        raw.cursor()
    except sqlite3.ProgrammingError:
        return True
    return False
