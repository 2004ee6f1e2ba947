"""The contactor relay output ends low on every way out of the daemon, with the daemon in a
process of its own: `ev-terminal run` as the unit's `ExecStart` runs it, on the emulated GPIO
chip whose line levels outlive the process (as Raspberry Pi OS keeps them), the PN532 and
Modbus devices emulated on pseudo-terminals in a process of their own, the reference gateway on
loopback.

What each layer covers is in docs/operations.md ("Start-up and fail-safe layers"): a SIGKILL
or SIGABRT leaves the line where the dead process left it, and the unit's `ExecStopPost=`
command alone drives it low; a failure while the devices are built leaves it low because the
relay is built, and driven low, first; a bad key dir stops start-up before anything is opened.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.server import EmbeddedGateway
from hardware.emulators.gpio_chip import write_line
from hardware.emulators.remote import EmulatorProcess
from hardware.ports import PilotState
from hardware.sim.card_script import load_profiles
from terminal.station import sim_keys
from tests.crash.pi_daemon import (
    FEEDBACK,
    RELAY,
    WAIT_S,
    ContactorRig,
    Station,
    wait_status,
)
from tests.deploy.test_notify import NotifySocket
from tests.drivers.pi_config import example_pi_data

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    with contextlib.ExitStack() as stack:
        gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
        gateway.up()
        stack.callback(gateway.close)
        emulators = stack.enter_context(EmulatorProcess())
        reader = emulators.pn532()
        line = emulators.modbus_line(
            meter={"model": "sdm630", "unit_id": 1, "energy_wh": 1_000_000},
            board={"unit_id": 2, "state": PilotState.A},
        )
        chip = tmp_path / "gpiochip"
        chip.mkdir()
        rig = ContactorRig(chip).start()
        stack.callback(rig.stop)
        notify = NotifySocket(tmp_path / "notify")
        stack.callback(notify.sock.close)
        watchdog = tmp_path / "watchdog"  # a regular file stands in for /dev/watchdog
        watchdog.touch()

        data = example_pi_data()
        key_dir, _ = sim_keys(tmp_path / "data", data["station"]["id"])
        data["data"] = {"dir": str(tmp_path / "data"), "keys_dir": str(key_dir)}
        data["gateway"] = {"url": gateway.url, "receipt_url": gateway.url + "/receipts"}
        data["session"] = {"sample_interval": "300ms", "contactor_check": "100ms"}
        hw = data["hardware"]
        hw["reader"] = reader.port
        rtu = {"port": line.port, "baudrate": 38400, "timeout_s": 0.5, "retries": 1}
        hw["meter"].update(rtu, unit_id=1)
        hw["vehicle"].update(rtu, unit_id=2, poll_interval_s=0.015)
        hw["gpio"]["pin_factory"] = "emulated"
        hw["gpio"]["contactor"]["feedback"] = {"pin": FEEDBACK, "active_state": True}
        hw["display"]["port"] = 0
        hw["watchdog"] = {"path": str(watchdog)}
        station = Station(tmp_path, chip, data, notify, reader=reader, board=line.board)
        yield station
        station.kill_all()


def charge(station: Station) -> subprocess.Popen[bytes]:
    """Start the daemon and take a session to charging: the relay line is high."""
    assert station.reader is not None and station.board is not None
    proc = station.start()
    station.notify.wait_for("READY", WAIT_S)
    station.reader.present(load_profiles()["visa"].card())
    wait_status(station, "awaitingvehicle")
    station.reader.remove()
    station.board.set_state(PilotState.B)
    wait_status(station, "pilot B")
    station.board.set_state(PilotState.C)
    wait_status(station, "contactor closed")
    assert station.relay is True, station.log()
    return proc


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGABRT], ids=["SIGKILL", "SIGABRT"])
def test_a_killed_daemon_leaves_the_relay_high_and_exec_stop_post_drives_it_low(
    station: Station, signum: signal.Signals
) -> None:
    proc = charge(station)
    proc.send_signal(signum)
    assert proc.wait(WAIT_S) == -signum
    # Nothing in the dead process could act: the line is where it was (as on Raspberry Pi OS).
    assert station.relay is True
    done = station.exec_stop_post()
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert station.relay is False
    assert b"event=relay_off pin=17 result=low" in done.stdout


def test_exec_stop_post_alone_drives_the_relay_low(station: Station) -> None:
    write_line(station.chip, RELAY, True)  # as a crashed daemon left it
    done = station.exec_stop_post()
    assert done.returncode == 0, done.stderr.decode()
    assert station.relay is False


def test_a_clean_stop_leaves_the_relay_low(station: Station) -> None:
    proc = charge(station)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT_S) == 0, station.log()
    assert station.relay is False


def test_a_device_that_fails_to_open_at_start_up_leaves_the_relay_low(station: Station) -> None:
    """The web display's port is taken: the build fails after the relay was driven low."""
    write_line(station.chip, RELAY, True)  # as a crashed daemon left it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        station.data["hardware"]["display"]["port"] = taken.getsockname()[1]
        proc = station.start()
        assert proc.wait(WAIT_S) != 0
    assert station.relay is False, station.log()


def test_a_bad_key_dir_stops_start_up_before_any_device_is_opened(station: Station) -> None:
    """Keys come first: nothing is opened, the line is untouched until ExecStopPost runs."""
    write_line(station.chip, RELAY, True)  # as a crashed daemon left it
    key_dir = Path(station.data["data"]["keys_dir"])
    key_dir.chmod(0o750)
    proc = station.start()
    assert proc.wait(WAIT_S) == 2
    assert "data.keys_dir" in station.log()
    assert station.relay is True  # start-up stopped before the relay was built
    assert station.exec_stop_post().returncode == 0
    assert station.relay is False
