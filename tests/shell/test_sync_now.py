"""A technician's `sync now` sends what waits in back-off, without waiting for it."""

from __future__ import annotations

from collections.abc import Callable

from launcher.simulate import Simulation, parse_script

Run = Callable[[str], Simulation]


def test_sync_now_sends_a_capture_waiting_in_back_off(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 10m\ngateway down\ntap visa\nwait 2h\n")
    sim.run_step(parse_script("gateway up", set())[0])  # no time passes: still in back-off
    [before] = sim.results()
    assert not before["acknowledged"]
    sim.daemon.sender.sync_now()
    sim.settle()
    [after] = sim.results()
    assert after["acknowledged"]
