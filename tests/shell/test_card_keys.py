"""The DUKPT keys in a running kiosk: the stop tap uses none; a key problem (registers
missing or damaged, counter exhausted) is a device fault: out of service, on the status, an
event the gateway acknowledged; sessions the journal holds still settle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from launcher.simulate import Simulation, parse_script
from terminal.protection.dukpt import derive_initial_key
from terminal.protection.keys import BDK_FILE, read_key_file
from terminal.protection.registers import REGISTERS_FILE, FileRegisterStore, FutureKeys
from terminal.shell.daemon import CARD_KEYS
from tests.ledger_check import assert_ledger_agrees

Run = Callable[[str], Simulation]


def _step(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(sim.profiles)):
        sim.run_step(step)


def _key_dir(sim: Simulation) -> Path:
    return sim.data_dir / "keys" / "devices" / sim.config.station.id


def _registers(sim: Simulation) -> FileRegisterStore:
    return FileRegisterStore(_key_dir(sim) / REGISTERS_FILE)


def _fault_events(sim: Simulation) -> list[str]:
    """The fault events the gateway acknowledged (their outbox rows are done)."""

    return [
        json.loads(r["body"])["event"]["detail"]
        for r in sim.daemon.journal.outbox()
        if r["kind"] == "events"
        and r["state"] == "done"
        and json.loads(r["body"])["event"]["kind"] == "fault"
    ]


def _assert_out_of_service_for_keys(sim: Simulation) -> None:
    assert CARD_KEYS in sim.daemon.status().faults
    assert not sim.daemon.kiosk.available
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    assert CARD_KEYS in _fault_events(sim)


def test_the_stop_tap_uses_no_dukpt_key(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 10m\ntap visa\nexpect receipt\n")
    assert _registers(sim).load().counter == 2  # counter 1 for the start, none for the stop
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert_ledger_agrees(sim)


def test_missing_registers_at_start_are_a_fault_and_the_journal_still_settles(
    simulate: Run,
) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 10m\n")
    (_key_dir(sim) / REGISTERS_FILE).unlink()
    _step(sim, "restart\nwait 1m")
    _assert_out_of_service_for_keys(sim)
    [result] = sim.results()  # the session the crash cut short is captured all the same
    assert result["settlement"] == "captured"
    assert result["acknowledged"]
    _step(sim, "unplug\nwait 1m\ntap mastercard\nwait 1m")
    assert len(sim.gateway.ledger.all_authorizations()) == 1  # no new hold
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    assert_ledger_agrees(sim)


def test_an_exhausted_counter_is_a_fault_not_a_card_problem(simulate: Run) -> None:
    sim = simulate("expect idle\n")
    gateway_dir = sim.data_dir / "keys" / "gateway"
    store = _registers(sim)
    ikid = store.load().initial_key_id
    initial_key = derive_initial_key(read_key_file(gateway_dir / BDK_FILE, lengths=(16,)), ikid)
    # One counter left: the last valid one, 0xFFFF0000.
    store.save(FutureKeys.after(initial_key, ikid, 0xFFFE_8000))
    _step(sim, "restart\ntap visa\nexpect plug-in\nplug\nev charge\nwait 5m\ntap visa")
    [auth] = sim.gateway.ledger.all_authorizations()
    assert auth["status"] == "captured"
    assert store.load().counter is None
    assert CARD_KEYS not in sim.daemon.status().faults
    _step(sim, "unplug\nwait 1m\ntap mastercard\nwait 10s")
    _assert_out_of_service_for_keys(sim)
    assert len(sim.gateway.ledger.all_authorizations()) == 1
    # After a restart the exhausted key is found at start-up.
    _step(sim, "restart\nwait 10s")
    _assert_out_of_service_for_keys(sim)
    assert_ledger_agrees(sim)
