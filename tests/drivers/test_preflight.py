"""What `run` checks before any device opens, and `check-config` with it: the key dir and its
modes, two devices on one serial port, the hardware watchdog on by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from launcher.cli import main as cli_main
from terminal.config import parse
from terminal.errors import ConfigError
from terminal.preflight import check_hardware
from terminal.service import run_service
from terminal.station import sim_keys
from terminal.wiring import pi_settings
from tests.drivers.pi_config import EXAMPLE, example_pi_data, to_toml


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def with_keys(tmp_path: Path) -> dict[str, Any]:
    data = example_pi_data()
    key_dir, _ = sim_keys(tmp_path / "data", data["station"]["id"])
    data["data"] = {"dir": str(tmp_path / "data"), "keys_dir": str(key_dir)}
    return data


def test_check_config_accepts_a_pi_config_with_good_keys(tmp_path: Path, capsys: Any) -> None:
    assert cli_main(["check-config", str(write(tmp_path, with_keys(tmp_path)))]) == 0
    assert "backend pi" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda keys: keys.chmod(0o750), "must be 0700"),
        (lambda keys: (keys / "token.key").chmod(0o640), "0600"),
        (lambda keys: (keys / "token.key").unlink(), "token.key"),
        (lambda keys: os.rename(keys, keys.with_name("gone")), "No such file"),
    ],
    ids=["dir-mode", "file-mode", "file-missing", "dir-missing"],
)
def test_check_config_refuses_a_key_dir_run_could_not_use(
    tmp_path: Path, capsys: Any, damage: Any, problem: str
) -> None:
    data = with_keys(tmp_path)
    damage(Path(data["data"]["keys_dir"]))
    assert cli_main(["check-config", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "data.keys_dir" in err and problem in err, err


def test_run_needs_a_key_dir_and_check_config_refuses_a_config_without_one(
    tmp_path: Path, capsys: Any
) -> None:
    data = example_pi_data()
    assert cli_main(["check-config", str(write(tmp_path, data))]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no "ok"
    assert err.splitlines() == [
        "config error: data.keys_dir: missing: the device key directory is required to run"
    ]
    # `run` refuses it with the same words: both call the one preflight.
    with pytest.raises(ConfigError, match=r"data\.keys_dir: missing") as refused:
        run_service(parse(data, base=EXAMPLE.parent))
    assert f"config error: {refused.value}" == err.strip()


@pytest.mark.parametrize(
    ("where", "problem"),
    [("afile", "afile is not a directory"), ("afile/data", "is under")],
    ids=["data-dir-a-file", "data-dir-under-a-file"],
)
def test_check_config_refuses_a_data_dir_run_could_not_make(
    tmp_path: Path, capsys: Any, where: str, problem: str
) -> None:
    data = with_keys(tmp_path)
    (tmp_path / "afile").write_text("x")
    data["data"]["dir"] = str(tmp_path / where)
    assert cli_main(["check-config", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "data.dir" in err and problem in err, err


def test_check_config_accepts_a_data_dir_run_will_create(tmp_path: Path, capsys: Any) -> None:
    data = with_keys(tmp_path)
    data["data"]["dir"] = str(tmp_path / "not" / "yet")
    assert cli_main(["check-config", str(write(tmp_path, data))]) == 0
    assert not (tmp_path / "not").exists()  # checked, not made


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"console": {"port": "/dev/ttyAMA0"}}, "console.port"),  # the reader's UART
        ({"hardware": {"vehicle": {"port": "/dev/ttyAMA0"}}}, "hardware.meter.port"),
        ({"hardware": {"meter": {"port": "/dev/ttyAMA0"}}}, "hardware.meter.port"),
    ],
    ids=["console-on-reader", "vehicle-on-reader", "meter-on-reader"],
)
def test_two_devices_on_one_serial_port_are_refused(
    tmp_path: Path, capsys: Any, change: dict[str, Any], key: str
) -> None:
    data = with_keys(tmp_path)
    for section, values in change.items():
        for name, value in values.items():
            if isinstance(value, dict):
                data[section][name].update(value)
            else:
                data[section][name] = value
    if "vehicle" in change.get("hardware", {}):  # the reader's port, not the meter's line
        data["hardware"]["meter"]["port"] = "/dev/ttyUSB0"
    assert cli_main(["check-config", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "/dev/ttyAMA0 is already used by" in err, err


def test_a_symlinked_port_is_the_port_it_names(tmp_path: Path) -> None:
    """/dev/serial0 on a Pi is a link to the UART; a link is the same port as its target."""
    target = tmp_path / "ttyAMA0"
    target.touch()
    (tmp_path / "serial0").symlink_to(target)
    data = example_pi_data()
    data["hardware"]["reader"] = str(target)
    data["console"] = {"port": str(tmp_path / "serial0")}
    with pytest.raises(ConfigError, match=r"console\.port: .* already used by hardware\.reader"):
        check_hardware(parse(data, base=EXAMPLE.parent))


def test_the_meter_and_evse_board_may_share_one_line() -> None:
    data = example_pi_data()
    data["hardware"]["vehicle"].update(
        port=data["hardware"]["meter"]["port"], unit_id=2, timeout_s=0.5, retries=2
    )
    settings = check_hardware(parse(data, base=EXAMPLE.parent))
    assert settings is not None and settings.shared_line


def test_the_hardware_watchdog_is_on_without_its_table_and_off_only_when_told() -> None:
    data = example_pi_data()
    del data["hardware"]["watchdog"]
    settings = pi_settings(parse(data, base=EXAMPLE.parent).hardware)
    assert settings.watchdog is not None and settings.watchdog.path == "/dev/watchdog"
    data["hardware"]["watchdog"] = {"enabled": False}
    assert pi_settings(parse(data, base=EXAMPLE.parent).hardware).watchdog is None
