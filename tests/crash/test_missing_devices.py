"""Devices that are missing do not take the daemon with them: `ev-terminal run`, started by the
unit's own `ExecStart` line, with no reader, no meter, no EVSE board, no LCD and no watchdog
device behind the configured paths, comes up, keeps the relay low, shows each missing device as
a fault on the technician console and in systemd's STATUS, reports each to the gateway, and
stays near idle while it waits for them (the pollers back off).

CPU use is the daemon's own user + system time (/proc/PID/stat) over a window, divided by the
window: what the process did, however busy the machine is, not how fast it did it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect.fdpexpect
import pytest
import sqlalchemy as sa

from gateway.ledger import events as gateway_events
from gateway.server import EmbeddedGateway
from terminal.station import sim_keys
from tests.crash.pi_daemon import WAIT_S, Station, wait_status
from tests.deploy.test_notify import NotifySocket
from tests.drivers.pi_config import example_pi_data

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

FAULTS = ("meter", "reader", "vehicle_link", "watchdog")
WINDOW_S = 6.0
MAX_CORE_SHARE = 0.02


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process, all its threads (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EmbeddedGateway]:
    gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
    gateway.up()
    yield gateway
    gateway.close()


@pytest.fixture
def console() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(slave)
    os.close(master)


def test_every_device_missing_is_a_fault_shown_and_reported_and_the_daemon_stays_idle(
    tmp_path: Path, gateway: EmbeddedGateway, console: tuple[int, str]
) -> None:
    chip = tmp_path / "gpiochip"
    chip.mkdir()
    missing = tmp_path / "missing"  # no such directory: nothing under it can be opened
    data = example_pi_data()
    key_dir, _ = sim_keys(tmp_path / "data", data["station"]["id"])
    data["data"] = {"dir": str(tmp_path / "data"), "keys_dir": str(key_dir)}
    data["gateway"] = {"url": gateway.url, "receipt_url": gateway.url + "/receipts"}
    console_master, console_port = console
    data["console"] = {"port": console_port}
    hw = data["hardware"]
    hw["reader"] = str(missing / "ttyPN532")
    hw["meter"]["port"] = str(missing / "ttyUSB0")
    hw["vehicle"]["port"] = str(missing / "ttyUSB1")
    hw["gpio"]["pin_factory"] = "emulated"
    hw["display"] = {"kind": "lcd", "bus": 250}  # no /dev/i2c-250
    hw["watchdog"] = {"path": str(missing / "watchdog")}

    with contextlib.ExitStack() as stack:
        notify = NotifySocket(tmp_path / "notify")
        stack.callback(notify.sock.close)
        station = Station(tmp_path, chip, data, notify)
        stack.callback(station.kill_all)
        proc = station.start()
        notify.wait_for("READY", WAIT_S)
        wait_status(station, "faults " + ",".join(FAULTS))
        assert station.relay is False

        # Let start-up work settle, then measure a window of waiting for the devices.
        time.sleep(1.0)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(WINDOW_S)
        used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - started
        assert proc.poll() is None, station.log()
        share = used / elapsed
        assert share < MAX_CORE_SHARE, f"{share:.1%} of a core with every device missing"

        term = pexpect.fdpexpect.fdspawn(console_master, timeout=WAIT_S, encoding="utf-8")
        term.expect_exact(f"{data['station']['id']}> ")
        term.send("status\r")
        term.expect(r"faults\s+([a-z_, ]+)\r\n")
        assert term.match is not None
        assert term.match.group(1).split(", ") == list(FAULTS)
        term.expect_exact("NOT ANSWERING")  # the reader row

        deadline = time.monotonic() + WAIT_S
        while True:
            with gateway.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(gateway_events.c.kind, gateway_events.c.detail).where(
                        gateway_events.c.kind == "fault"
                    )
                )
                reported = sorted(row.detail for row in rows)
            if reported == sorted(FAULTS) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert reported == sorted(FAULTS)
        assert station.relay is False
