"""The outbox's bounds and recovery: orphaned holds are voided, a full journal stops new
sessions but not settling, events are bounded, status shows the queue truthfully."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from launcher.simulate import Simulation, parse_script
from terminal.errors import JournalFull
from terminal.shell import journal as journal_mod
from terminal.shell.daemon import JOURNAL_FULL
from terminal.shell.journal import Journal
from tests.ledger_check import assert_ledger_agrees

Run = Callable[[str], Simulation]


def _step(sim: Simulation, line: str) -> None:
    for step in parse_script(line, set(sim.profiles)):
        sim.run_step(step)


def test_recovery_voids_a_hold_whose_session_is_missing(simulate: Run) -> None:
    sim = simulate("tap visa\nexpect plug-in\n")
    [auth] = sim.gateway.ledger.all_authorizations()
    assert auth["status"] == "approved"
    # The session row is lost (a restored backup, a bug): only the outbox knows the hold.
    sim.daemon.journal._conn().execute("DELETE FROM sessions")
    _step(sim, "restart\nwait 1m")
    [auth] = sim.gateway.ledger.all_authorizations()
    assert auth["status"] == "voided"
    assert auth["void_reason"] == "orphaned_hold"
    assert [m["kind"] for m in sim.gateway.ledger.all_movements()] == ["hold", "release"]
    assert sim.daemon.journal.orphan_holds() == []
    _step(sim, "restart")  # and only once
    assert [m["kind"] for m in sim.gateway.ledger.all_movements()] == ["hold", "release"]


def test_recovery_voids_an_unsent_authorization_with_no_session(simulate: Run) -> None:
    # An id of the wire's shape (8 to 64 of A-Z a-z 0-9 _ -): the gateway refuses others.
    sim = simulate("expect idle\n")
    journal = sim.daemon.journal
    journal.enqueue(
        lane="ghost-0001",
        kind="authorize",
        idem_key="ghost-0001:authorize",
        path="/v1/authorizations",
        body={"authorization_id": "ghost-0001"},
        at=sim.clock.now(),
    )
    assert journal.orphan_holds() == ["ghost-0001"]
    _step(sim, "restart\nwait 1m")
    rows = {r["kind"]: r["state"] for r in journal.outbox() if r["lane"] == "ghost-0001"}
    assert rows == {"authorize": "superseded", "void": "done"}
    [tombstone] = sim.gateway.ledger.all_authorizations()
    assert tombstone["status"] == "voided"
    assert sim.gateway.ledger.all_movements() == []


def test_a_full_journal_refuses_new_sessions_but_settles_the_running_one(
    simulate: Run,
) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 10m\n")
    journal = sim.daemon.journal
    pages = journal._conn().execute("PRAGMA page_count").fetchone()[0]
    journal.cap_pages(pages)  # the disk is full now
    _step(sim, "wait 30s")
    assert JOURNAL_FULL in sim.daemon.kiosk.faults
    assert sim.daemon.status().faults == (JOURNAL_FULL,)
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["ended"] == "fault"
    _step(sim, "unplug\nwait 1m\ntap mastercard")
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    assert len(sim.gateway.ledger.all_authorizations()) == 1  # no new hold was asked for
    [result] = sim.results()
    assert result["acknowledged"]
    # Room again (the disk was cleaned up): the fault clears and sessions start again.
    journal.cap_pages(1_000_000)
    _step(sim, "wait 30s\nexpect idle\ntap mastercard\nexpect plug-in\nwait 3m")
    assert len(sim.gateway.ledger.all_authorizations()) == 2
    assert_ledger_agrees(sim)


def _fill(journal: Journal) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(10_000):
        journal.enqueue(
            lane=f"s{n}",
            kind="void",
            idem_key=f"s{n}:void",
            path="/v1/x",
            body={"reason": "x" * 200},
            at=at,
        )


def test_a_write_to_a_full_journal_raises_journal_full(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    pages = journal._conn().execute("PRAGMA page_count").fetchone()[0]
    journal.cap_pages(pages + 2)
    with pytest.raises(JournalFull):
        _fill(journal)
    assert journal.free_pages() == 0
    journal.close()


def test_unsent_events_are_bounded_captures_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "EVENTS_WINDOW", 50)
    journal = Journal(tmp_path / "j.sqlite3")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(120):
        kind = "capture" if n % 10 == 0 else "events"
        journal.enqueue(
            lane=f"s{n}" if kind == "capture" else "events",
            kind=kind,
            idem_key=f"k{n}",
            path="/v1/x",
            body={"n": n},
            at=at + timedelta(seconds=n),
        )
    rows = journal.outbox()
    assert sum(r["kind"] == "capture" for r in rows) == 12  # every capture is kept
    events = [r["seq"] for r in rows if r["kind"] == "events"]
    assert min(events) > 120 - 50
    depth, oldest = journal.queue_stats()
    assert depth == len(rows)
    assert oldest == at.isoformat()  # the first capture waits longest
    journal.close()


def test_status_shows_queue_depth_and_the_oldest_unsent_age(simulate: Run) -> None:
    sim = simulate("gateway down\ntap visa\nexpect no-answer\nwait 2h\n")
    status = sim.daemon.status()
    # The void of the unanswered authorization waits to be sent.
    assert status.queue_depth == len(
        [r for r in sim.daemon.journal.outbox() if r["state"] == "pending"]
    )
    assert status.queue_depth >= 1
    assert status.oldest_unsent_age_s is not None
    assert 2 * 3600 <= status.oldest_unsent_age_s <= 2 * 3600 + 60
    _step(sim, "gateway up\nwait 10m")
    status = sim.daemon.status()
    assert (status.queue_depth, status.oldest_unsent, status.oldest_unsent_age_s) == (0, None, None)
    assert_ledger_agrees(sim)
