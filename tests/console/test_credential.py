"""The technician PIN: a scrypt hash in a private file, and a lock-out that survives restarts."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from terminal.console.credential import (
    SCRYPT_N,
    Lockout,
    LockoutPolicy,
    PinFile,
    set_pin,
)
from terminal.errors import ConfigError, KeyMaterialError

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_the_pin_is_stored_as_a_scrypt_hash_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "technician-pin"
    set_pin(path, "481516")
    record = json.loads(path.read_text())
    assert record["kdf"] == "scrypt"
    assert (record["n"], record["r"], record["p"]) == (SCRYPT_N, 8, 1)
    assert "481516" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pin = PinFile(path)
    assert pin.verify("481516")
    assert not pin.verify("481517")


def test_a_pin_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "technician-pin"
    set_pin(path, "481516")
    os.chmod(path, 0o644)
    with pytest.raises(KeyMaterialError, match="group or others"):
        PinFile(path).verify("481516")


@pytest.mark.parametrize("pin", ["12345", "12 3456", "x" * 65, "pässwort"])
def test_short_or_odd_pins_are_refused(tmp_path: Path, pin: str) -> None:
    with pytest.raises(ConfigError):
        set_pin(tmp_path / "p", pin)


def test_lockout_after_repeated_failures_survives_a_restart(tmp_path: Path) -> None:
    policy = LockoutPolicy(attempts=3, lockout_s=600)
    lockout = Lockout(tmp_path / "lockout.json", policy)
    assert lockout.failed(T0) == 2
    assert lockout.failed(T0) == 1
    assert lockout.remaining_s(T0) == 0
    assert lockout.failed(T0) == 0
    restarted = Lockout(tmp_path / "lockout.json", policy)  # a new process reads the file
    assert restarted.remaining_s(T0 + timedelta(seconds=60)) == 540
    assert restarted.remaining_s(T0 + timedelta(seconds=600)) == 0
    assert restarted.failed(T0 + timedelta(seconds=601)) == 2  # a fresh count after it ends


def test_a_success_clears_the_count(tmp_path: Path) -> None:
    lockout = Lockout(tmp_path / "lockout.json", LockoutPolicy(attempts=3))
    lockout.failed(T0)
    lockout.failed(T0)
    lockout.succeeded()
    assert lockout.failed(T0) == 2


def test_a_clock_set_back_never_lengthens_a_lockout(tmp_path: Path) -> None:
    lockout = Lockout(tmp_path / "lockout.json", LockoutPolicy(attempts=1, lockout_s=600))
    lockout.failed(T0)
    assert lockout.remaining_s(T0 - timedelta(days=30)) == 600


def test_a_damaged_lockout_file_locks_rather_than_unlocks(tmp_path: Path) -> None:
    path = tmp_path / "lockout.json"
    path.write_text("{not json")
    path.chmod(0o600)
    assert Lockout(path, LockoutPolicy(lockout_s=600)).remaining_s(T0) == 600


def test_set_technician_pin_from_a_config_stores_the_hash_and_clears_a_lockout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from launcher.cli import main
    from terminal.config import load

    example = Path(__file__).resolve().parents[2] / "deploy" / "terminal.toml"
    config_path = tmp_path / "terminal.toml"
    config_path.write_text(
        example.read_text().replace('dir = "../var/lib/ev-terminal"', 'dir = "data"')
    )
    config = load(config_path)
    lockout = Lockout(config.data_dir / "console-lockout.json", LockoutPolicy(attempts=1))
    lockout.failed(T0)
    monkeypatch.setattr("sys.stdin", io.StringIO("271828\n"))
    assert main(["set-technician-pin", "--config", str(config_path), "--stdin"]) == 0
    assert "scrypt hash only" in capsys.readouterr().out
    assert PinFile(config.pin_file).verify("271828")
    assert lockout.remaining_s(T0) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    assert main(["set-technician-pin", "--file", str(tmp_path / "p"), "--stdin"]) == 2
