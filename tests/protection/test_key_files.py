"""Key files: owner-only permissions, clear errors, provisioning a simulated fleet."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from terminal.errors import ConfigError, KeyMaterialError
from terminal.protection import provision
from terminal.protection.dukpt import InitialKeyId, KeyType, derive_initial_key
from terminal.protection.keys import (
    ProvisionedFleet,
    load_device_keys,
    load_gateway_keys,
    provision_fleet,
    read_key_file,
)
from terminal.protection.registers import FutureKeys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provisioning_writes_private_dirs_and_files(fleet: ProvisionedFleet) -> None:
    dirs = [fleet.gateway_dir, fleet.gateway_dir.parent, *fleet.device_dirs.values()]
    files = [p for d in dirs for p in d.iterdir() if p.is_file()]

    assert {_mode(d) for d in dirs} == {0o700}
    assert {_mode(f) for f in files} == {0o600}
    assert sorted(p.name for p in fleet.device_dirs["kiosk-1"].iterdir()) == [
        "dukpt-ikid",
        "dukpt-registers",
        "ocmf-pagination",
        "ocmf-signing.key",
        "ocmf-signing.pub.pem",
        "token.key",
    ]
    assert sorted(p.name for p in fleet.gateway_dir.iterdir()) == [
        "bdk.key",
        "fleet.json",
        "token.key",
    ]


def test_device_initial_keys_derive_from_the_gateway_bdk(fleet: ProvisionedFleet) -> None:
    gateway = load_gateway_keys(fleet.gateway_dir)

    for name, key_dir in fleet.device_dirs.items():
        device = load_device_keys(key_dir)
        registers = device.registers.load()
        ikid = registers.initial_key_id
        assert ikid == gateway.devices[name]
        assert ikid.bdk_id == gateway.bdk_id
        initial_key = derive_initial_key(gateway.bdk, ikid)
        assert registers == FutureKeys.load_initial_key(initial_key, ikid)
        assert registers.counter == 1
        assert device.token_key == gateway.token_key
    ids = [load_device_keys(d).registers.load().initial_key_id for d in fleet.device_dirs.values()]
    assert len(set(ids)) == len(ids)


def test_no_bdk_is_written_to_a_device(fleet: ProvisionedFleet) -> None:
    bdk_hex = (fleet.gateway_dir / "bdk.key").read_text().strip()

    for key_dir in fleet.device_dirs.values():
        for path in key_dir.iterdir():
            assert bdk_hex not in path.read_text()


def test_aes256_fleet_has_aes256_keys(fleet256: ProvisionedFleet) -> None:
    gateway = load_gateway_keys(fleet256.gateway_dir)
    device = load_device_keys(fleet256.device_dirs["kiosk-a"])

    assert gateway.key_type is KeyType.AES256
    assert len(gateway.bdk) == 32
    assert device.registers.load().key_type is KeyType.AES256


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
@pytest.mark.parametrize("name", ["token.key", "dukpt-ikid"])
def test_device_key_file_readable_by_others_is_refused(
    fleet: ProvisionedFleet, name: str, mode: int
) -> None:
    path = fleet.device_dirs["kiosk-1"] / name
    path.chmod(mode)

    with pytest.raises(KeyMaterialError, match=re.escape(name)) as caught:
        load_device_keys(fleet.device_dirs["kiosk-1"])
    assert str(path) in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)


@pytest.mark.parametrize("name", ["bdk.key", "token.key"])
def test_gateway_key_file_readable_by_others_is_refused(fleet: ProvisionedFleet, name: str) -> None:
    (fleet.gateway_dir / name).chmod(0o644)

    with pytest.raises(KeyMaterialError, match=re.escape(name)):
        load_gateway_keys(fleet.gateway_dir)


def test_owner_only_modes_are_accepted(fleet: ProvisionedFleet) -> None:
    path = fleet.device_dirs["kiosk-1"] / "token.key"
    path.chmod(0o400)

    assert len(read_key_file(path, lengths=(32,))) == 32


@pytest.mark.parametrize("name", ["token.key", "dukpt-ikid", "dukpt-registers"])
def test_missing_device_file_is_named(fleet: ProvisionedFleet, name: str) -> None:
    (fleet.device_dirs["kiosk-1"] / name).unlink()

    with pytest.raises(KeyMaterialError, match=re.escape(name)):
        load_device_keys(fleet.device_dirs["kiosk-1"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not hex at all\n", "hex"),
        ("ABCD\n", "2 bytes"),
        ("00" * 17 + "\n", "17 bytes"),
        ("\xff\xfe", "hex"),
    ],
)
def test_malformed_key_file_is_explained(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "dukpt-ik.key"
    path.write_bytes(content.encode("latin-1"))
    path.chmod(0o600)

    with pytest.raises(KeyMaterialError, match=problem) as caught:
        read_key_file(path, lengths=(16, 24, 32))
    assert str(path) in str(caught.value)


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.mkdir(mode=0o700)

    with pytest.raises(KeyMaterialError, match="regular file"):
        read_key_file(path, lengths=(32,))


def test_malformed_fleet_file_is_named(fleet: ProvisionedFleet) -> None:
    (fleet.gateway_dir / "fleet.json").write_text(json.dumps({"fleet_id": "x"}))

    with pytest.raises(KeyMaterialError, match=r"fleet\.json"):
        load_gateway_keys(fleet.gateway_dir)


def test_provisioning_never_overwrites_keys(fleet: ProvisionedFleet) -> None:
    before = (fleet.device_dirs["kiosk-1"] / "dukpt-registers").read_text()
    out_dir = fleet.gateway_dir.parent

    with pytest.raises(KeyMaterialError, match="refusing"):
        provision_fleet(out_dir, fleet_id="again", devices=["kiosk-1"])
    assert (fleet.device_dirs["kiosk-1"] / "dukpt-registers").read_text() == before


@pytest.mark.parametrize(
    "devices", [[], ["ok", "ok"], ["../escape"], [".hidden"], ["with space"], ["x" * 65]]
)
def test_provisioning_refuses_bad_device_names(tmp_path: Path, devices: list[str]) -> None:
    with pytest.raises(ConfigError, match="device"):
        provision_fleet(tmp_path / "keys", fleet_id="f", devices=devices)


def test_provisioned_key_ids_follow_the_device_order(tmp_path: Path) -> None:
    fleet = provision_fleet(
        tmp_path / "keys",
        fleet_id="f",
        devices=["b", "a", "c"],
        random_bytes=lambda n: bytes([0x5A]) * n,
    )

    assert fleet.bdk_id == "5A5A5A5A"
    assert fleet.initial_key_ids == {
        "b": "5A5A5A5A00000001",
        "a": "5A5A5A5A00000002",
        "c": "5A5A5A5A00000003",
    }
    device = load_device_keys(fleet.device_dirs["c"])
    assert device.registers.load().initial_key_id == InitialKeyId.from_hex("5A5A5A5A00000003")


def test_key_holders_hide_their_keys_in_repr(fleet: ProvisionedFleet) -> None:
    gateway = load_gateway_keys(fleet.gateway_dir)
    device = load_device_keys(fleet.device_dirs["kiosk-1"])
    registers = device.registers.load()
    secrets = [
        gateway.bdk.hex(),
        gateway.token_key.secret.hex(),
        *(key.hex() for key in registers.registers.values()),
    ]

    for text in (repr(gateway), repr(device), repr(registers), str(gateway)):
        for secret in secrets:
            assert secret.upper() not in text.upper()


def test_provision_command_writes_a_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys"

    code = provision.main(
        ["--out", str(out), "--fleet", "demo", "--device", "k1", "--device", "k2", "--aes", "256"]
    )

    assert code == 0
    gateway = load_gateway_keys(out / "gateway")
    assert gateway.fleet_id == "demo"
    assert gateway.key_type is KeyType.AES256
    assert set(gateway.devices) == {"k1", "k2"}
    printed = capsys.readouterr().out
    assert "k1" in printed
    assert "k2" in printed
    assert gateway.bdk.hex().upper() not in printed.upper()
    assert gateway.token_key.secret.hex().upper() not in printed.upper()


def test_provision_command_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--out", str(tmp_path / "keys"), "--fleet", "demo", "--device", "k1"]
    assert provision.main(args) == 0

    assert provision.main(args) == 1
    assert "refusing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--out", "x", "--fleet", "f"],
        ["--out", "x", "--fleet", "f", "--device", "d", "--aes", "512"],
    ],
)
def test_provision_command_rejects_bad_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert provision.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ev-terminal provision: ")  # one line naming the problem
    assert err.count("\n") == 1
