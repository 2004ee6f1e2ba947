"""A real daemon on the simulator with an embedded gateway, and its console on a pty."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pexpect.fdpexpect
import pytest
import serial

from gateway.server import EmbeddedGateway
from hardware.clock import SystemClock
from hardware.sim.card_script import load_profiles
from terminal.config import Config
from terminal.console.console import Console
from terminal.console.credential import set_pin
from terminal.console.port import ConsoleThread, build_console
from terminal.console.recent_log import RecentLog
from terminal.shell.daemon import Daemon
from terminal.station import SimHardware, build_daemon, sim_keys

PIN = "481516"
TIMEOUT_S = 10.0


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Wait for a condition the daemon's threads will make true (bounded)."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.02):
                raise AssertionError("condition not met in time")
    finally:
        deadline.cancel()


@dataclass
class Bench:
    config: Config
    daemon: Daemon
    hardware: SimHardware
    recent_log: RecentLog
    transcript: io.StringIO = field(default_factory=io.StringIO)
    restarts: list[str] = field(default_factory=list)
    consoles: list[tuple[ConsoleThread, pexpect.fdpexpect.fdspawn, int]] = field(
        default_factory=list
    )

    def open_console(self) -> pexpect.fdpexpect.fdspawn:
        """A new console on a new pty, as after a reboot or on a second port."""
        master, slave = os.openpty()
        port = serial.Serial(os.ttyname(slave), baudrate=115_200, timeout=0.05)
        console: Console = build_console(
            self.config,
            self.daemon,
            port,
            self.recent_log,
            restart=lambda: self.restarts.append("restart"),
        )
        thread = ConsoleThread(console, port)
        thread.start()
        child = pexpect.fdpexpect.fdspawn(master, timeout=TIMEOUT_S, encoding="utf-8")
        child.logfile_read = self.transcript
        self.consoles.append((thread, child, slave))
        child.expect_exact("Type help.")
        child.expect_exact(f"{self.config.station.id}> ")
        return child

    def tap(self, card: str) -> None:
        self.hardware.reader.present(load_profiles()[card].card())


@pytest.fixture
def bench(config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Bench]:
    caplog.set_level(logging.INFO)
    data = tmp_path / "kiosk"
    cfg = replace(
        config,
        data_dir=data,
        console=replace(
            config.console,
            pin_file=tmp_path / "keys" / "technician-pin",
            lockout_attempts=3,
            idle_timeout_ms=60_000,
            reader_window_ms=5_000,
        ),
    )
    set_pin(cfg.pin_file, PIN)
    gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
    gateway.up()
    clock = SystemClock()
    hardware = SimHardware.build(clock)
    key_dir, _ = sim_keys(data, cfg.station.id)
    daemon = build_daemon(
        config=cfg,
        devices=hardware.devices(),
        clock=clock,
        gateway_url=gateway.url,
        key_dir=key_dir,
    )
    recent_log = RecentLog()
    logging.getLogger().addHandler(recent_log)
    runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    runner.start()
    bench = Bench(config=cfg, daemon=daemon, hardware=hardware, recent_log=recent_log)
    try:
        wait_for(lambda: daemon.status().phase == "Idle")
        yield bench
    finally:
        for thread, child, slave in bench.consoles:
            thread.stop()
            child.close()
            os.close(slave)
        daemon.stop()
        runner.join(timeout=TIMEOUT_S)
        logging.getLogger().removeHandler(recent_log)
        gateway.close()
        assert not runner.is_alive()
