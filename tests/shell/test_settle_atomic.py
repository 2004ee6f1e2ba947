"""A session's final status and its capture request are one transaction: a failure between
them leaves the session unsettled, and the restart settles it exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from launcher.simulate import Simulation, parse_script
from tests.ledger_check import assert_ledger_agrees

Run = Callable[[str], Simulation]


def _step(sim: Simulation, line: str) -> None:
    sim.run_step(parse_script(line, set(sim.profiles))[0])


def test_a_failed_capture_write_rolls_back_the_settled_status(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 20m\n")
    db = sim.daemon.journal.path
    # A real storage fault: the outbox table disappears under the running daemon.
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE outbox RENAME TO outbox_away")
    _step(sim, "tap visa")
    [row] = sim.daemon.journal.sessions()
    assert row["status"] == "finishing"  # not "capturing" without its capture queued
    assert "internal" in sim.daemon.kiosk.faults
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE outbox_away RENAME TO outbox")
    _step(sim, "restart")
    _step(sim, "wait 1m")
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["energy_wh"] == 11_000 * 20 // 60
    assert result["acknowledged"]
    assert_ledger_agrees(sim)
