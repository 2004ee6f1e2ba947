"""What the daemon learns at start-up, when nothing has changed yet."""

from __future__ import annotations

from collections.abc import Callable

from launcher.simulate import Simulation
from tests.ledger_check import assert_ledger_agrees

Run = Callable[[str], Simulation]


def test_a_vehicle_plugged_in_before_a_restart_can_charge_after_it(simulate: Run) -> None:
    sim = simulate(
        "plug\nev charge\nrestart\ntap visa\nexpect charging\nwait 10m\ntap visa\nexpect receipt\n"
    )
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["energy_wh"] == 11_000 * 10 // 60
    assert_ledger_agrees(sim)
