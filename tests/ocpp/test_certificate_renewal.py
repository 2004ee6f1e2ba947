"""A03: the kiosk renews its client certificate (security profile 3) by itself before it
expires, `[ocpp] renew_before` ahead, through the CSMS (SignCertificate, CertificateSigned),
asks again after SecurityCtrlr.CertSigningWaitMinimum when no certificate comes, and the
certificate files live where the shipped unit lets the kiosk write them. Over real TLS on
loopback (the CSMS's CA from `trustme`), every message validated against the OCA schemas."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hardware.clock import ManualClock
from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.config import Config, OcppConfig
from terminal.errors import ConfigError
from terminal.preflight import check_ocpp_certificate
from tests.ocpp.harness import run
from tests.ocpp.test_security import (  # the fixtures and helpers of the profile tests
    _carries_a_session,
    _pem,
    _server_context,
    _sign,
    _until,
    ca,
    servers,
    sims,
)

__all__ = ["ca", "servers", "sims"]  # fixtures used by name

# The kiosk's clock starts at the real time here: the CSMS checks the certificate's validity
# on the real clock (TLS), the kiosk its expiry on its own.
NOW = datetime.now(UTC).replace(microsecond=0)


def _expiring(ca: trustme.CA, station: str, not_after: datetime) -> tuple[bytes, bytes]:
    """A client certificate for `station` from the CSMS's CA that expires at `not_after`:
    (PEM chain, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, station)]))
        .sign(key, hashes.SHA256())
    )
    chain, _ = _sign(ca, csr.public_bytes(serialization.Encoding.PEM).decode())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    leaf = x509.load_pem_x509_certificate(chain)
    short = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(leaf.extensions[0].value, critical=True)
        .add_extension(leaf.extensions[1].value, critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return short.public_bytes(serialization.Encoding.PEM) + ca.cert_pem.bytes(), pem_key


def _profile_3(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
    *,
    expires: datetime,
    **fields: object,
) -> tuple[Simulation, ReferenceCsms, Path]:
    csms = ReferenceCsms(
        passwords={}, ssl_context=_server_context(ca, client_certs=True), client_ca=True
    ).start()
    servers.append(csms)
    station = config.station.id
    chain, key = _expiring(ca, station, expires)
    ocpp_dir = tmp_path / "var-lib-ev-terminal" / "ocpp"
    ocpp_dir.mkdir(parents=True)
    cert_file = _pem(ocpp_dir / "client.pem", chain)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=station,
        security_profile=3,
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
        cert_file=cert_file,
        key_file=_pem(ocpp_dir / "client.key", key, private=True),
        **fields,  # type: ignore[arg-type]
    )
    sim = Simulation(
        config=replace(config, ocpp=ocpp), data_dir=tmp_path / "kiosk", clock=ManualClock(NOW)
    )
    sims.append(sim)
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    return sim, csms, cert_file


def test_a_certificate_near_its_expiry_is_renewed_without_the_csms_asking(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    expires = NOW + timedelta(days=17)  # within the default 30 days
    sim, csms, cert_file = _profile_3(config, ca, tmp_path, sims, servers, expires=expires)
    station = config.station.id
    first = csms.certificates[station]
    assert _until(lambda: len(csms.messages("SignCertificate")) == 1)
    assert csms.messages("TriggerMessage") == []  # the CSMS never asked
    [asked] = [r.payload for r in csms.messages("SignCertificate")]
    assert asked["certificateType"] == "ChargingStationCertificate"
    chain, renewed = _sign(ca, asked["csr"])  # valid to the end of 2027
    answer = csms.ask(station, "CertificateSigned", {"certificateChain": chain.decode()})
    assert answer["status"] == "Accepted"
    new_der = renewed.public_bytes(serialization.Encoding.DER)
    assert _until(lambda: csms.certificates.get(station) == new_der)
    assert new_der != first and cert_file.read_bytes() == chain
    # Renewed: not asked again, on later days either.
    run(sim, "wait 2h\n")
    assert not _until(lambda: len(csms.messages("SignCertificate")) > 1, timeout_s=6)
    _carries_a_session(sim, csms)


def test_a_certificate_far_from_expiry_is_left_alone(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    expires = NOW + timedelta(days=40)
    _, csms, _ = _profile_3(
        config, ca, tmp_path, sims, servers, expires=expires, renew_before_ms=30 * 86_400_000
    )
    assert not _until(lambda: len(csms.messages("SignCertificate")) > 0, timeout_s=6)


@pytest.mark.slow  # about 40 s: each "not asked again" waits out the client's loop
def test_without_an_answer_the_request_is_repeated_after_the_wait_doubling_then_given_up(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    expires = NOW + timedelta(days=3)
    sim, csms, _ = _profile_3(
        config, ca, tmp_path, sims, servers, expires=expires, renew_before_ms=7 * 86_400_000
    )
    station = config.station.id
    assert _until(lambda: len(csms.messages("SignCertificate")) == 1)
    variables = {
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "CertSigningWaitMinimum"},
                "attributeValue": "60",
            }
        ]
    }
    [result] = csms.ask(station, "SetVariables", variables)["setVariableResult"]
    assert result["attributeStatus"] == "Accepted"
    get = {
        "getVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": name}}
            for name in ("CertSigningRepeatTimes", "SecurityProfile")
        ]
    }
    answers = csms.ask(station, "GetVariables", get)["getVariableResult"]
    assert [a["attributeValue"] for a in answers] == ["3", "3"]

    def asked(count: int) -> bool:
        return _until(lambda: len(csms.messages("SignCertificate")) == count)

    def stays(count: int) -> bool:
        return not _until(lambda: len(csms.messages("SignCertificate")) > count, timeout_s=6)

    # The first wait was the default hour (it began before the new minimum): then 2, 4 min.
    run(sim, "wait 59m\n")
    assert stays(1)
    run(sim, "wait 1m\n")
    assert asked(2)
    run(sim, "wait 1m\n")
    assert stays(2)
    run(sim, "wait 1m\n")
    assert asked(3)
    run(sim, "wait 4m\n")
    assert asked(4)  # the third repeat (CertSigningRepeatTimes)
    run(sim, "wait 8m\n")
    assert stays(4)  # given up
    run(sim, "wait 3h\n")
    assert stays(4)


def test_the_certificate_files_must_be_where_the_kiosk_may_write(
    config: Config, ca: trustme.CA, tmp_path: Path
) -> None:
    """`run` and `check-config` refuse a profile-3 certificate in a directory the process
    cannot write (under the unit, anything outside /var/lib/ev-terminal), naming the key."""
    read_only = tmp_path / "etc-keys"
    read_only.mkdir()
    leaf = ca.issue_cert(config.station.id)
    cert = _pem(read_only / "client.pem", leaf.cert_chain_pems[0].bytes())
    key = _pem(read_only / "client.key", leaf.private_key_pem.bytes(), private=True)
    ocpp = OcppConfig(
        url="wss://csms.example:443/ocpp",
        station_id=config.station.id,
        security_profile=3,
        ca_file=cert,
        cert_file=cert,
        key_file=key,
    )
    check_ocpp_certificate(replace(config, ocpp=ocpp))  # writable: fine
    unlock = _read_only(read_only)
    if unlock is None:
        pytest.skip("root, and chattr +i does not work on this file system")
    try:
        with pytest.raises(ConfigError) as refused:
            check_ocpp_certificate(replace(config, ocpp=ocpp))
        assert refused.value.key == "ocpp.cert_file"
        assert "/var/lib/ev-terminal" in str(refused.value)
    finally:
        unlock()


def _read_only(directory: Path) -> Callable[[], None] | None:
    """Make `directory` unwritable for this process, as ProtectSystem=strict makes /etc: by
    its mode, or, for root (whom modes do not stop), immutable (chattr +i: the kernel refuses
    writes in it to everyone). The function that undoes it, or None if neither works."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        return lambda: directory.chmod(0o700)
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
    if done.returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(directory)], check=True)
