"""The daemon under a real sd_notify socket: READY only once the contactor is open and the
devices are up; WATCHDOG pings from the main loop stop while the loop is stuck."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.server import EmbeddedGateway
from hardware.clock import SystemClock
from hardware.ports import MeterReading
from hardware.sim.meter import SimMeter
from terminal.config import Config
from terminal.shell.devices import Devices
from terminal.shell.notify import Notifier
from terminal.station import SimHardware, build_daemon, sim_keys

TIMEOUT_S = 10.0


class GatedMeter:
    """The simulated meter, with a gate: while it is shut, `read` blocks (a hung bus)."""

    def __init__(self, meter: SimMeter, contactor_history: list[str]) -> None:
        self.meter = meter
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.history = contactor_history
        self.contactor_at_first_read: list[str] | None = None

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    def read(self) -> MeterReading:
        if self.contactor_at_first_read is None:
            self.contactor_at_first_read = list(self.history)
        if not self.gate.is_set():
            self.blocked.set()
            assert self.gate.wait(TIMEOUT_S), "the test never opened the gate"
            self.blocked.clear()
        return self.meter.read()


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except (TimeoutError, BlockingIOError):
            return None
        return dict(line.split("=", 1) for line in data.splitlines())

    def wait_for(self, key: str, timeout: float = TIMEOUT_S) -> dict[str, str]:
        while (message := self.receive(timeout)) is not None:
            if key in message:
                return message
        raise AssertionError(f"no {key} within {timeout} s")

    def drain(self) -> None:
        while self.receive(0.0) is not None:
            pass


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.sock.close()


def test_ready_after_contactor_open_and_devices_up_then_watchdog_stops_when_stuck(
    config: Config, tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    clock = SystemClock()
    hardware = SimHardware.build(clock)
    meter = GatedMeter(hardware.meter, hardware.contactor.history)
    devices = Devices(
        reader=hardware.reader,
        contactor=hardware.contactor,
        meter=meter,
        vehicle=hardware.vehicle,
        display=hardware.display,
    )
    gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
    gateway.up()
    key_dir, _ = sim_keys(config.data_dir, config.station.id)
    daemon = build_daemon(
        config=config,
        devices=devices,
        clock=clock,
        gateway_url=gateway.url,
        key_dir=key_dir,
        notifier=Notifier.from_environment(),
    )
    runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    runner.start()
    try:
        # Start-up is stuck reading the meter: the contactor was opened first, no READY yet.
        assert meter.blocked.wait(TIMEOUT_S)
        assert meter.contactor_at_first_read == ["open"]
        assert notify_socket.receive(0.3) is None
        meter.gate.set()
        ready = notify_socket.wait_for("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("idle; pilot A; contactor open")
        assert hardware.contactor.history[0] == "open"
        assert not hardware.contactor.commanded_closed
        assert daemon.status().phase == "Idle"

        for _ in range(3):  # healthy: pings keep coming
            notify_socket.wait_for("WATCHDOG", timeout=1.0)

        meter.gate.clear()  # the next meter sample hangs the main loop
        assert meter.blocked.wait(TIMEOUT_S)
        notify_socket.drain()
        silence = [notify_socket.receive(0.1) for _ in range(6)]  # 3 ping intervals
        assert not [m for m in silence if m and "WATCHDOG" in m]

        meter.gate.set()  # unstuck: pings resume
        notify_socket.wait_for("WATCHDOG", timeout=2.0)
    finally:
        meter.gate.set()
        daemon.stop()
        runner.join(timeout=TIMEOUT_S)
        gateway.close()
    assert not runner.is_alive()
    assert notify_socket.wait_for("STOPPING")["STOPPING"] == "1"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("idle")
    assert notifier.watchdog_interval_s is None


def test_watchdog_usec_for_another_process_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "@ev", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(env).watchdog_interval_s is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier.from_environment(env).watchdog_interval_s == 15.0


def test_abstract_socket_names_are_reached(tmp_path: Path) -> None:
    name = f"ev-terminal-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(TIMEOUT_S)
    notifier = Notifier(f"@{name}")
    try:
        assert notifier.status("charging")
        assert sock.recv(100) == b"STATUS=charging"
    finally:
        notifier.close()
        sock.close()
