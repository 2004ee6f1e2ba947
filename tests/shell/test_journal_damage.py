"""A damaged journal at start-up, in process (the real-process patterns are in
tests/crash/test_damaged_journal.py): it is set aside, the kiosk is out of service with
`journal_damaged` until the gateway's open holds are reconciled — which waits for the gateway —
and the hold the lost journal had is released with an alert. The journal's identity: bound
to its terminal, a wrong file is damage, a new journal says so."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from launcher.simulate import Simulation, parse_script
from terminal.errors import JournalError
from terminal.shell.journal import MIGRATIONS, Journal
from terminal.shell.journal_damage import JOURNAL_DAMAGED, open_journal
from tests.ledger_check import assert_records_agree

Run = Callable[[str], Simulation]


def _step(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(sim.profiles)):
        sim.run_step(step)


def _events(sim: Simulation) -> list[tuple[str, str]]:
    return [
        (e["event"]["kind"], e["event"]["detail"])
        for r in sim.daemon.journal.outbox()
        if r["kind"] == "events"
        for e in [json.loads(r["body"])]
    ]


def test_a_damaged_journal_keeps_the_kiosk_out_of_service_until_the_gateway_answers(
    simulate: Run,
) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 5m\n")
    [hold] = sim.gateway.ledger.all_authorizations()
    assert hold["status"] == "approved"
    journal_file = sim.daemon.journal.path
    sim.daemon.journal.close()
    with journal_file.open("r+b") as f:
        f.write(b"\xff" * 100)  # the header: not a database any more
    _step(sim, "gateway down")
    sim.restart()

    [aside] = [p for p in sim.data_dir.iterdir() if p.name.startswith("damaged-")]
    assert (aside / journal_file.name).exists()
    status = sim.daemon.status()
    assert JOURNAL_DAMAGED in status.faults
    assert status.out_of_service or not sim.daemon.kiosk.available
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    _step(sim, "unplug\nwait 10m")  # still no gateway: still out of service
    assert JOURNAL_DAMAGED in sim.daemon.status().faults
    assert sim.gateway.ledger.all_authorizations()[0]["status"] == "approved"

    _step(sim, "gateway up\nwait 6m")
    assert JOURNAL_DAMAGED not in sim.daemon.status().faults
    assert sim.daemon.kiosk.available
    [released] = sim.gateway.ledger.all_authorizations()
    assert (released["status"], released["void_reason"]) == ("voided", "journal_lost")
    events = _events(sim)
    assert ("fault", JOURNAL_DAMAGED) in events
    assert ("fault_cleared", JOURNAL_DAMAGED) in events
    assert ("hold_unknown", f"{hold['id']} amount=5000 EUR released") in events
    assert any(kind == "journal_behind" for kind, _ in events)

    _step(sim, "tap visa\nplug\nev charge\nwait 10m\ntap visa\nunplug\nwait 2m")
    assert_records_agree(
        sim.daemon.journal.sessions(),
        sim.gateway.ledger.all_authorizations(),
        sim.gateway.ledger.all_movements(),
        lost={hold["id"]},
    )


def test_an_intact_journal_releases_nothing_and_stays_in_service(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 5m\nrestart\nwait 1m\n")
    assert sim.daemon.sender.reconciled
    assert not [p for p in sim.data_dir.iterdir() if p.name.startswith("damaged-")]
    # The journal knew the session: recovery settled it from the journal and the meter.
    [hold] = sim.gateway.ledger.all_authorizations()
    assert (hold["status"], hold["void_reason"]) == ("captured", None)
    assert not [k for k, _ in _events(sim) if k in ("hold_unknown", "journal_behind")]
    _step(sim, "unplug\ntap visa\nplug\nev charge\nwait 5m\ntap visa\nunplug\nwait 2m")
    assert [r["settlement"] for r in sim.results()] == ["captured", "captured"]


def test_a_journal_belongs_to_one_terminal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first = journal.identity("KIOSK-1")
    assert first.new and first.terminal_id == "KIOSK-1" and len(first.journal_id) == 32
    with pytest.raises(JournalError, match="terminal KIOSK-1"):
        journal.identity("KIOSK-2")
    journal.close()
    again = Journal(tmp_path / "j.sqlite3").identity("KIOSK-1")
    assert again.journal_id == first.journal_id and not again.new


@pytest.mark.parametrize(
    "make",
    [
        "another program's database",
        "a newer schema",
        "another terminal's journal",
    ],
)
def test_a_wrong_file_is_set_aside(tmp_path: Path, make: str) -> None:
    path = tmp_path / "journal.sqlite3"
    if make == "another program's database":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            conn.commit()
    elif make == "a newer schema":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    else:
        Journal(path).identity("KIOSK-2")
    opened = open_journal(path, "KIOSK-1")
    assert opened.damage is not None and opened.aside is not None
    assert (opened.aside / path.name).exists()
    assert opened.identity.new and opened.journal.sessions() == []
    opened.journal.close()
