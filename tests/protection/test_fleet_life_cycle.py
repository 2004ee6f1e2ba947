"""An existing fleet's life cycle from the CLI: add a device, revoke one, renew the CRL, each
without touching a key the fleet already holds; refusals exit 2 and change nothing.

Every fleet here is written by `ev-terminal provision` itself (with its TLS CA), and the
results are checked with the loaders the kiosk and the gateway use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.tls import Revocations
from terminal.protection import certs, provision
from terminal.protection.dukpt import derive_initial_key
from terminal.protection.keys import load_device_keys, load_gateway_keys
from terminal.protection.registers import FutureKeys
from terminal.shell.signed_readings import ensure_signing_key

Snapshot = dict[str, bytes]


def snapshot(root: Path) -> Snapshot:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    argv = ["--out", str(out), "--fleet", "f", "--device", "k1", "--device", "k2"]
    assert provision.main([*argv, "--tls-host", "127.0.0.1"]) == 0
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = provision.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def load_crl(root: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((root / "gateway" / certs.CRL_FILE).read_bytes())


def client_cert(root: Path, name: str) -> x509.Certificate:
    path = root / "devices" / name / certs.CLIENT_CERT_FILE
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_adding_a_device_gives_it_the_fleets_keys_and_touches_none(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(root)

    code, out, _ = run(capsys, "--out", str(root), "--add", "k3")

    assert code == 0
    after = snapshot(root)
    changed = {name for name in after if before.get(name) != after[name]}
    assert {n for n in changed if not n.startswith("devices/k3/")} == {"gateway/fleet.json"}
    assert set(before) <= set(after)
    gateway = load_gateway_keys(root / "gateway")
    device = load_device_keys(root / "devices" / "k3")
    registers = device.registers.load()
    ikid = registers.initial_key_id
    assert gateway.devices["k3"] == ikid
    assert ikid.hex() == gateway.bdk_id.hex().upper() + "00000003"
    initial_key = derive_initial_key(gateway.bdk, ikid)
    assert registers == FutureKeys.load_initial_key(initial_key, ikid)
    assert device.token_key == gateway.token_key
    assert "k3" in out
    assert gateway.bdk.hex().upper() not in out.upper()


def test_an_added_device_has_a_client_certificate_from_the_fleet_ca(root: Path) -> None:
    assert provision.main(["--out", str(root), "--add", "k3"]) == 0

    ca = x509.load_pem_x509_certificate((root / "gateway" / certs.CA_FILE).read_bytes())
    cert = client_cert(root, "k3")
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "k3"
    pinned = (root / "devices" / "k3" / certs.CA_FILE).read_bytes()
    assert pinned == (root / "gateway" / certs.CA_FILE).read_bytes()
    assert (root / "devices" / "k3" / certs.CLIENT_KEY_FILE).stat().st_mode & 0o077 == 0


def test_an_added_device_has_an_ocmf_key_the_gateway_knows(root: Path) -> None:
    assert provision.main(["--out", str(root), "--add", "k3"]) == 0

    key = ensure_signing_key(root / "devices" / "k3")  # loads it: the kiosk makes none
    fleet = json.loads((root / "gateway" / "fleet.json").read_text())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fleet["ocmf_keys"]["k3"] == der.hex().upper()
    assert set(fleet["ocmf_keys"]) == {"k1", "k2", "k3"}


def test_adding_to_a_missing_fleet_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--out", str(tmp_path / "none"), "--add", "k1")

    assert code == 2
    assert "no fleet here" in err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("name", ["k1", "k2"])
def test_adding_an_existing_device_exits_2_and_changes_nothing(
    root: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), "--add", "k9", "--add", name)

    assert code == 2
    assert f"device {name!r} already exists" in err
    assert snapshot(root) == before


def test_adding_a_bad_name_exits_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), "--add", "../escape")

    assert code == 2
    assert "not a device name" in err
    assert snapshot(root) == before


def test_revoking_puts_the_certificate_on_the_crl_and_drops_the_card_data(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serial = client_cert(root, "k2").serial_number
    keys_before = {
        n: b
        for n, b in snapshot(root).items()
        if n not in ("gateway/fleet.json", "gateway/tls-crl.pem")
    }

    code, out, _ = run(capsys, "--out", str(root), "--revoke", "k2")

    assert code == 0
    assert f"serial {serial:x}" in out
    assert load_crl(root).get_revoked_certificate_by_serial_number(serial) is not None
    assert set(load_gateway_keys(root / "gateway").devices) == {"k1"}
    fleet = json.loads((root / "gateway" / "fleet.json").read_text())
    assert set(fleet["revoked"]) == {"k2"}
    assert {n: b for n, b in snapshot(root).items() if n in keys_before} == keys_before
    gateway_view = Revocations(
        root / "gateway" / certs.CRL_FILE,
        root / "gateway" / certs.CA_FILE,
        lambda: datetime.now(UTC),
    )
    assert gateway_view.refusal(serial) == "revoked"
    assert gateway_view.refusal(client_cert(root, "k1").serial_number) is None


@pytest.mark.parametrize(
    ("argv", "problem"),
    [(["--revoke", "k9"], "not in the fleet"), (["--revoke", "k1", "--revoke", "k1"], "repeat")],
)
def test_revoking_an_unknown_device_exits_2_and_changes_nothing(
    root: Path, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), *argv)

    assert code == 2
    assert problem in err
    assert snapshot(root) == before


def test_revoking_twice_exits_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--out", str(root), "--revoke", "k1")[0] == 0
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), "--revoke", "k1")

    assert code == 2
    assert "already revoked" in err
    assert snapshot(root) == before


def test_a_revoked_name_and_its_derivation_id_are_never_given_out_again(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--out", str(root), "--revoke", "k2")[0] == 0

    assert run(capsys, "--out", str(root), "--add", "k2")[0] == 2
    assert run(capsys, "--out", str(root), "--add", "k4")[0] == 0
    ikid = load_gateway_keys(root / "gateway").devices["k4"]
    assert int.from_bytes(ikid.derivation_id, "big") == 3


def test_renewing_the_crl_moves_next_update_and_keeps_its_entries(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--out", str(root), "--revoke", "k1")[0] == 0
    old = load_crl(root)
    old_number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    others = {n: b for n, b in snapshot(root).items() if n != "gateway/tls-crl.pem"}

    code, out, _ = run(capsys, "--out", str(root), "--renew-crl", "--crl-days", "60")

    assert code == 0
    new = load_crl(root)
    assert new.next_update_utc is not None
    assert old.next_update_utc is not None
    assert new.next_update_utc - old.next_update_utc > timedelta(days=29)
    assert new.next_update_utc.isoformat() in out
    assert [(r.serial_number, r.revocation_date_utc) for r in new] == [
        (r.serial_number, r.revocation_date_utc) for r in old
    ]
    assert new.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        old_number + 1
    )
    ca = x509.load_pem_x509_certificate((root / "gateway" / certs.CA_FILE).read_bytes())
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert new.is_signature_valid(public)
    assert {n: b for n, b in snapshot(root).items() if n != "gateway/tls-crl.pem"} == others


def test_renewing_a_crl_not_signed_by_the_fleet_ca_is_refused(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = certs.issue_ca("foreign")
    (root / "gateway" / certs.CRL_FILE).write_bytes(certs.crl(foreign, [123]))
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), "--renew-crl")

    assert code == 1
    assert "not signed by the fleet CA" in err
    assert snapshot(root) == before


def test_renewing_without_a_fleet_or_a_ca_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--out", str(tmp_path / "none"), "--renew-crl")
    assert code == 2
    assert "no fleet here" in err

    plain = tmp_path / "plain"
    assert run(capsys, "--out", str(plain), "--fleet", "f", "--device", "k1")[0] == 0
    code, _, err = run(capsys, "--out", str(plain), "--renew-crl")
    assert code == 2
    assert "no TLS CA" in err


def test_a_fleet_without_tls_adds_and_revokes_devices_by_their_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    assert run(capsys, "--out", str(plain), "--fleet", "f", "--device", "k1")[0] == 0

    code, out, _ = run(capsys, "--out", str(plain), "--add", "k2")
    assert code == 0
    assert "no TLS" in out
    assert not (plain / "devices" / "k2" / certs.CLIENT_CERT_FILE).exists()
    code, out, _ = run(capsys, "--out", str(plain), "--revoke", "k1")
    assert code == 0
    assert "no TLS certificate" in out
    assert set(load_gateway_keys(plain / "gateway").devices) == {"k2"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--add", "k3", "--device", "k4"],
        ["--add", "k3", "--revoke", "k1"],
        ["--revoke", "k1", "--tls-host", "h"],
        ["--add", "k3", "--crl-days", "5"],
        ["--fleet", "g", "--renew-crl"],
    ],
)
def test_options_that_do_not_go_together_are_bad_usage(
    root: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    before = snapshot(root)

    code, _, err = run(capsys, "--out", str(root), *argv)

    assert code == 2
    assert err.startswith("ev-terminal provision: ")  # one line naming the problem
    assert err.count("\n") == 1
    assert snapshot(root) == before
