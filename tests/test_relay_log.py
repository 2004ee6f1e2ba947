"""The simulated plant's relay log names the session each closing served, so the crash tests
credit a closing's energy to its hold exactly instead of inferring it from timestamps. Real
processes: a `sim-kiosk` (scripted and threaded) against a gateway process."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware.sim.stored import register_log
from launcher.sim_kiosk import HARDWARE_DIR
from terminal.protection.keys import provision_fleet
from tests.crash.processes import GatewayProcess, KioskProcess, kiosk_config
from tests.crash.test_sigkill import delivered_per_authorization

# Two drivers one after the other; the first car pauses and charges again (a second closing
# under the same session), the second stops by unplugging.
VISITS = [
    "tap visa",
    "plug",
    "ev charge",
    "wait 2m",
    "ev pause",
    "wait 1m",
    "ev charge",
    "wait 1m",
    "tap visa",
    "wait 10s",
    "unplug",
    "wait 70s",
    "tap mastercard",
    "plug",
    "ev charge",
    "wait 3m",
    "unplug",
    "wait 10m",
]


@pytest.mark.slow
@pytest.mark.parametrize("threaded", [False, True], ids=["scripted", "threaded"])
def test_each_relay_closing_names_the_session_it_served(tmp_path: Path, threaded: bool) -> None:
    fleet = provision_fleet(tmp_path / "keys", fleet_id="relay-log", devices=["R1"])
    gateway = GatewayProcess(tmp_path, tmp_path / "keys" / "gateway")  # started
    kiosk = KioskProcess(
        config=kiosk_config(tmp_path, "R1"),
        data=tmp_path / "R1",
        gateway_url=gateway.url,
        key_dir=fleet.device_dirs["R1"],
        id_prefix="log",
    )
    if threaded:
        kiosk.argv.append("--threaded")
    try:
        kiosk.start()
        for step in VISITS:
            kiosk.step(step)
        kiosk.stop()
        authorizations = gateway.rows("authorizations")
    finally:
        gateway.stop()
    first, second = sorted(authorizations, key=lambda a: a["created_at"])
    log = register_log(tmp_path / "R1" / HARDWARE_DIR)
    closings = [e for e in log if e["closed"]]
    assert [e["session"] for e in closings] == [first["id"], first["id"], second["id"]]
    assert all("session" not in e for e in log if not e["closed"])
    # Each capture is the energy the plant delivered in its own session's closings.
    delivered = delivered_per_authorization(log, authorizations)
    assert delivered == {first["id"]: first["energy_wh"], second["id"]: second["energy_wh"]}
    assert first["status"] == second["status"] == "captured"
    assert first["energy_wh"] > 0 and second["energy_wh"] > 0
