"""deploy/install.sh staged into a temporary root (twice: it is idempotent), and the units."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from terminal.config import load
from terminal.service import EXIT_RESTART

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"
TIMEOUT_S = 60


def _install(stage: Path, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(stage), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env={**os.environ, "PYTHON": "python3"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _tree(stage: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under the stage with its mode and content (or link target)."""
    tree: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(stage.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content: bytes | str = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = ""
        tree[str(path.relative_to(stage))] = (info.st_mode, content)
    return tree


def _pi_image(stage: Path, model: str) -> Path:
    """The parts of a Raspberry Pi OS Bookworm image the installer reads and edits."""
    (stage / "proc/device-tree").mkdir(parents=True)
    (stage / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
    boot = stage / "boot/firmware/config.txt"
    boot.parent.mkdir(parents=True)
    boot.write_text("# For more options and information see\n[all]\n")
    return boot


def test_install_stages_dirs_with_their_modes_and_runs_twice_to_the_same_tree(
    tmp_path: Path,
) -> None:
    stage = tmp_path / "root"
    boot = _pi_image(stage, "Raspberry Pi 5 Model B Rev 1.0")
    out = _install(stage, "--gateway")
    mode = {
        p: oct(os.stat(stage / p).st_mode & 0o7777)
        for p in (
            "etc/ev-terminal",
            "etc/ev-terminal/terminal.toml",
            "var/lib/ev-terminal",
            "var/lib/ev-terminal/keys",
            "var/lib/ev-terminal/ocpp",
            "etc/systemd/system/ev-terminal.service",
            "etc/systemd/system/ev-terminal-gateway.service",
            "etc/udev/rules.d/99-ev-terminal.rules",
        )
    }
    assert mode == {
        "etc/ev-terminal": "0o750",
        "etc/ev-terminal/terminal.toml": "0o640",
        "var/lib/ev-terminal": "0o750",
        "var/lib/ev-terminal/keys": "0o700",
        "var/lib/ev-terminal/ocpp": "0o700",
        "etc/systemd/system/ev-terminal.service": "0o644",
        "etc/systemd/system/ev-terminal-gateway.service": "0o644",
        "etc/udev/rules.d/99-ev-terminal.rules": "0o644",
    }
    assert (stage / "opt/ev-terminal/venv/bin/python").exists()
    assert (stage / "opt/ev-terminal/src/terminal/console/console.py").exists()
    assert (stage / "opt/ev-terminal/docs/operations.md").exists()
    assert (stage / "etc/systemd/system/ev-terminal.service").read_bytes() == (
        ROOT / "systemd/ev-terminal.service"
    ).read_bytes()
    # What needs the real system is only said, never done.
    for command in (
        "udevadm control --reload-rules",
        "systemctl enable ev-terminal.service",
        "systemctl daemon-reload",
        "chown ev-terminal:ev-terminal",
    ):
        assert f"would run: {command}" in out
    # The OCPP client certificate's directory belongs to the service: it renews it (A03).
    assert "var/lib/ev-terminal/ocpp/" in next(
        line for line in out.splitlines() if "would run: chown ev-terminal:ev-terminal" in line
    )
    assert "would run: useradd --system" in out or "user ev-terminal exists" in out

    config = load(stage / "etc/ev-terminal/terminal.toml")  # the installed config is valid
    assert config.data_dir == Path("/var/lib/ev-terminal")
    assert config.keys_dir == Path("/var/lib/ev-terminal/keys")
    # The reader has the PL011 (serial0); the console is the Pi 5's debug UART, not the same.
    assert config.console.port == "/dev/ttyAMA10"
    assert boot.read_text().splitlines()[-1] == "dtparam=strict_gpiod"
    assert "dtoverlay=disable-bt" not in boot.read_text()  # a Pi 5 has its own BT UART

    # The operator edits the config; a second run keeps it and changes nothing else.
    edited = stage / "etc/ev-terminal/terminal.toml"
    edited.write_text(edited.read_text().replace("KIOSK-0001", "KIOSK-0042"))
    before = _tree(stage)
    again = _install(stage, "--gateway")
    assert "config kept" in again
    assert _tree(stage) == before
    assert boot.read_text().count("dtparam=strict_gpiod") == 1


def test_on_a_pi_4_the_reader_gets_the_pl011_and_no_console_takes_its_uart(
    tmp_path: Path,
) -> None:
    stage = tmp_path / "root"
    boot = _pi_image(stage, "Raspberry Pi 4 Model B Rev 1.5")
    out = _install(stage)
    _install(stage)
    lines = boot.read_text().splitlines()
    assert lines.count("dtoverlay=disable-bt") == 1 and lines.count("dtparam=strict_gpiod") == 1
    assert "would run: systemctl disable hciuart.service" in out
    assert load(stage / "etc/ev-terminal/terminal.toml").console.port is None
    assert "serial-getty" not in out


def test_an_unknown_pi_model_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(tmp_path / "root"), "--pi-model", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    assert "--pi-model must be 3, 4 or 5" in result.stderr


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in (ROOT / "systemd" / unit).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_kiosk_unit_is_supervised_and_sandboxed() -> None:
    d = _directives("ev-terminal.service")
    for key, value in {
        "Type": "notify",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "User": "ev-terminal",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/ev-terminal",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "RestartForceExitStatus": str(EXIT_RESTART),
        "CapabilityBoundingSet": "",
        # lgpio's notification FIFOs need a writable directory (gpiozero#1106, lg#22).
        "WorkingDirectory": "/var/lib/ev-terminal",
        # The relay output low after every exit, without the daemon (tests/crash/).
        "ExecStopPost": "-/opt/ev-terminal/venv/bin/ev-terminal relay-off"
        " --config /etc/ev-terminal/terminal.toml",
    }.items():
        assert d[key] == [value], key
    assert "LG_WD=/var/lib/ev-terminal" in d["Environment"]
    allowed = " ".join(d["DeviceAllow"])
    for device in ("char-gpiochip", "char-i2c", "/dev/watchdog", "/dev/ttyAMA0", "char-ttyUSB"):
        assert f"{device} rw" in allowed
    assert d["ExecStart"] == [
        "/opt/ev-terminal/venv/bin/ev-terminal run --config /etc/ev-terminal/terminal.toml"
    ]


def test_the_gateway_unit_runs_as_a_dynamic_user_without_devices() -> None:
    d = _directives("ev-terminal-gateway.service")
    assert d["DynamicUser"] == ["yes"]
    assert d["PrivateDevices"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"]
    assert "gateway --db /var/lib/ev-terminal-gateway/" in d["ExecStart"][0]
