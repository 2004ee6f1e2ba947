"""The kiosk daemon in a process of its own, started by the systemd unit's own `ExecStart` line
(pointed at this venv and a config of the test's), on the emulated GPIO chip whose line levels
outlive the process (`hardware/emulators/gpio_chip.py`), with a notify socket standing in for
systemd's."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardware.emulators.gpio_chip import CHIP_DIR_ENV, read_line, write_line
from hardware.emulators.remote import RemoteEvseBoard, RemotePn532
from tests.deploy.test_notify import NotifySocket
from tests.drivers.pi_config import to_toml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UNIT = ROOT / "systemd" / "ev-terminal.service"
INSTALLED_BIN = "/opt/ev-terminal/venv/bin/ev-terminal"
INSTALLED_CONFIG = "/etc/ev-terminal/terminal.toml"
RELAY, FEEDBACK = 17, 27
WAIT_S = 20.0


def unit_command(key: str, config: Path) -> list[str]:
    """The unit's `key=` command line, pointed at this venv and this config. A leading "-"
    (failure ignored) is systemd's, not part of the command."""
    lines = [
        line.split("=", 1)[1]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{key}=")
    ]
    assert len(lines) == 1, f"one {key}= in the unit"
    argv = shlex.split(lines[0].removeprefix("-"))
    replaced = {INSTALLED_BIN: str(BIN / "ev-terminal"), INSTALLED_CONFIG: str(config)}
    return [replaced.get(arg, arg) for arg in argv]


class ContactorRig:
    """The contactor's auxiliary contact: it follows the relay line (feedback active high)."""

    def __init__(self, chip: Path) -> None:
        self.chip = chip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="contactor rig", daemon=True)

    def _follow(self) -> None:
        while not self._stop.wait(0.005):
            write_line(self.chip, FEEDBACK, bool(read_line(self.chip, RELAY)))

    def start(self) -> ContactorRig:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Station:
    """A daemon's surroundings: its config data, chip, notify socket, emulated devices (None
    where the test has none) and the processes started."""

    tmp: Path
    chip: Path
    data: dict[str, Any]
    notify: NotifySocket
    reader: RemotePn532 | None = None
    board: RemoteEvseBoard | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT_S)

    @property
    def config(self) -> Path:
        path = self.tmp / "terminal.toml"
        path.write_text(to_toml(self.data), encoding="utf-8")
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, CHIP_DIR_ENV: str(self.chip), "NOTIFY_SOCKET": str(self.notify.path)}

    def start(self) -> subprocess.Popen[bytes]:
        with (self.tmp / "daemon.log").open("ab") as log:
            proc = subprocess.Popen(
                unit_command("ExecStart", self.config),
                cwd=self.tmp,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def exec_stop_post(self) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            unit_command("ExecStopPost", self.config),
            cwd=self.tmp,
            env=self.env(),
            capture_output=True,
            timeout=WAIT_S,
            check=False,
        )

    @property
    def relay(self) -> bool | None:
        return read_line(self.chip, RELAY)

    def log(self) -> str:
        return (self.tmp / "daemon.log").read_text(errors="replace")


def wait_status(station: Station, fragment: str) -> None:
    while True:
        message = station.notify.wait_for("STATUS", WAIT_S)
        if fragment in message["STATUS"]:
            return
