"""The OCPP security profiles over real TLS on loopback (certificates from `trustme`): basic
auth over TLS (2) and client certificates (3) connect and carry a session; a wrong password,
a CSMS certificate from another CA, or a client certificate for another station do not."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.config import Config, OcppConfig
from tests.ocpp.harness import PASSWORD, password_file, run, transaction_events


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def sims() -> Iterator[list[Simulation]]:
    made: list[Simulation] = []
    yield made
    for sim in made:
        sim.close()


@pytest.fixture
def servers() -> Iterator[list[ReferenceCsms]]:
    made: list[ReferenceCsms] = []
    yield made
    for server in made:
        server.stop()


def _server_context(ca: trustme.CA, *, client_certs: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


def _pem(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _kiosk(config: Config, ocpp: OcppConfig, tmp_path: Path, sims: list[Simulation]) -> Simulation:
    sim = Simulation(config=replace(config, ocpp=ocpp), data_dir=tmp_path / f"k{len(sims)}")
    sims.append(sim)
    return sim


def _never_online(sim: Simulation, seconds: float = 1.5) -> bool:
    assert sim.ocpp is not None
    return not sim.ocpp.wait_online(seconds)


def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


SESSION = "tap visa\nplug\nev charge\nwait 5m\ntap visa\nwait 1m\n"


def _carries_a_session(sim: Simulation, csms: ReferenceCsms) -> None:
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    run(sim, SESSION)
    assert sim.ocpp_drained()
    events = transaction_events(csms)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1]["eventType"] == "Ended"


def test_profile_2_basic_auth_over_tls(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    csms = ReferenceCsms(
        passwords={config.station.id: PASSWORD},
        ssl_context=_server_context(ca, client_certs=False),
    ).start()
    servers.append(csms)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=2,
        password_file=password_file(tmp_path),
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
    )
    assert ocpp.url.startswith("wss://localhost:")
    _carries_a_session(_kiosk(config, ocpp, tmp_path, sims), csms)


def test_profile_3_client_certificate(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    csms = ReferenceCsms(
        passwords={}, ssl_context=_server_context(ca, client_certs=True), client_ca=True
    ).start()
    servers.append(csms)
    leaf = ca.issue_cert(config.station.id, common_name=config.station.id)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=3,
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
        cert_file=_pem(tmp_path / "client.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems)),
        key_file=_pem(tmp_path / "client.key", leaf.private_key_pem.bytes(), private=True),
    )
    _carries_a_session(_kiosk(config, ocpp, tmp_path, sims), csms)


def test_profile_3_refuses_another_stations_certificate(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    csms = ReferenceCsms(
        passwords={}, ssl_context=_server_context(ca, client_certs=True), client_ca=True
    ).start()
    servers.append(csms)
    leaf = ca.issue_cert("OTHER-0002", common_name="OTHER-0002")
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=3,
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
        cert_file=_pem(tmp_path / "client.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems)),
        key_file=_pem(tmp_path / "client.key", leaf.private_key_pem.bytes(), private=True),
    )
    assert _never_online(_kiosk(config, ocpp, tmp_path, sims))
    assert csms.messages() == []


def test_a_csms_certificate_from_another_ca_is_refused(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    csms = ReferenceCsms(
        passwords={config.station.id: PASSWORD},
        ssl_context=_server_context(trustme.CA(), client_certs=False),
    ).start()
    servers.append(csms)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=2,
        password_file=password_file(tmp_path),
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
    )
    sim = _kiosk(config, ocpp, tmp_path, sims)
    assert _never_online(sim)
    assert csms.messages() == []
    # A04: once the genuine CSMS answers on that address, it hears of the impostor once,
    # however many times the kiosk tried.
    csms.stop()
    genuine = ReferenceCsms(
        port=csms.port,
        passwords={config.station.id: PASSWORD},
        ssl_context=_server_context(ca, client_certs=False),
    ).start()
    servers.append(genuine)
    assert sim.ocpp is not None and sim.ocpp.wait_online(10) and sim.ocpp_drained()
    events = [r.payload for r in genuine.messages("SecurityEventNotification")]
    assert [e["type"] for e in events] == ["StartupOfTheDevice", "InvalidCsmsCertificate"]
    assert "certificate" in events[1]["techInfo"]


def test_a_wrong_password_is_refused_and_nothing_is_sent(
    config: Config, tmp_path: Path, sims: list[Simulation], servers: list[ReferenceCsms]
) -> None:
    csms = ReferenceCsms(passwords={config.station.id: "another password"}).start()
    servers.append(csms)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=1,
        password_file=password_file(tmp_path),
    )
    sim = _kiosk(config, ocpp, tmp_path, sims)
    run(sim, "tap visa\nwait 3m\n")
    assert _never_online(sim)
    assert csms.messages() == []
    assert sim.ocpp is not None
    queued = sim.ocpp.queue.messages()
    kept = [(m["action"], m["state"]) for m in queued if m["action"] != "SecurityEventNotification"]
    security = [
        json.loads(m["payload"])["type"]
        for m in queued
        if m["action"] == "SecurityEventNotification"
    ]
    assert security == ["StartupOfTheDevice", "FailedToAuthenticateAtCsms"]  # in its time
    assert kept == [
        ("StatusNotification", "pending"),  # Available
        ("StatusNotification", "pending"),  # Occupied (the tap)
        ("TransactionEvent", "pending"),  # Started
        ("TransactionEvent", "pending"),  # Ended (plug-in timeout)
        ("StatusNotification", "pending"),  # Available
        ("NotifySettlement", "pending"),  # Canceled
    ]
    # A04: the refusal is a security event, queued once however many times it was tried.
    csms.stop()
    right = ReferenceCsms(port=csms.port, passwords={config.station.id: PASSWORD}).start()
    servers.append(right)
    assert sim.ocpp.wait_online(10) and sim.ocpp_drained()
    events = [r.payload for r in right.messages("SecurityEventNotification")]
    assert [e["type"] for e in events] == ["StartupOfTheDevice", "FailedToAuthenticateAtCsms"]
    assert events[1]["techInfo"].startswith("HTTP 401")
    assert [s["status"] for s in (r.payload for r in right.messages("NotifySettlement"))] == [
        "Canceled"
    ]


def _sign(ca: trustme.CA, csr_pem: str) -> tuple[bytes, x509.Certificate]:
    """What the CSMS's CA does with a station's CSR: a client certificate for its key and
    name (valid over the simulated and the real clock), as a PEM chain with the CA."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem.bytes()
    return chain, cert


def test_profile_3_certificate_is_renewed_through_the_csms(
    config: Config,
    ca: trustme.CA,
    tmp_path: Path,
    sims: list[Simulation],
    servers: list[ReferenceCsms],
) -> None:
    """A02: TriggerMessage SignChargingStationCertificate -> SignCertificate with a real
    CSR for a new key -> CertificateSigned. A chain for another key is Rejected (a security
    event, nothing changes); the right one is installed and the next connection presents it."""
    csms = ReferenceCsms(
        passwords={}, ssl_context=_server_context(ca, client_certs=True), client_ca=True
    ).start()
    servers.append(csms)
    station = config.station.id
    leaf = ca.issue_cert(station, common_name=station)
    cert_file = _pem(tmp_path / "client.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key_file = _pem(tmp_path / "client.key", leaf.private_key_pem.bytes(), private=True)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=station,
        security_profile=3,
        ca_file=_pem(tmp_path / "ca.pem", ca.cert_pem.bytes()),
        cert_file=cert_file,
        key_file=key_file,
    )
    sim = _kiosk(config, ocpp, tmp_path, sims)
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    assert _until(lambda: station in csms.certificates)
    first = csms.certificates[station]
    trigger = {"requestedMessage": "SignChargingStationCertificate"}
    assert csms.ask(station, "TriggerMessage", trigger)["status"] == "Accepted"
    assert _until(lambda: len(csms.messages("SignCertificate")) == 1)
    [asked] = [r.payload for r in csms.messages("SignCertificate")]
    assert asked["certificateType"] == "ChargingStationCertificate"
    csr = x509.load_pem_x509_csr(asked["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == station
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    # Signed for another key: refused, reported, nothing installed.
    other = x509.CertificateSigningRequestBuilder().subject_name(csr.subject)
    other_csr = other.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    wrong, _ = _sign(ca, other_csr.public_bytes(serialization.Encoding.PEM).decode())
    answer = csms.ask(station, "CertificateSigned", {"certificateChain": wrong.decode()})
    assert answer["status"] == "Rejected"
    assert "not for the requested key" in answer["statusInfo"]["additionalInfo"]
    assert cert_file.read_bytes() == b"".join(b.bytes() for b in leaf.cert_chain_pems)
    assert _until(
        lambda: (
            [r.payload["type"] for r in csms.messages("SecurityEventNotification")][-1:]
            == ["InvalidChargingStationCertificate"]
        )
    )
    # The right one: installed, and presented from the next connection on.
    chain, renewed = _sign(ca, asked["csr"])
    answer = csms.ask(station, "CertificateSigned", {"certificateChain": chain.decode()})
    assert answer["status"] == "Accepted"
    new_der = renewed.public_bytes(serialization.Encoding.DER)
    assert _until(lambda: csms.certificates.get(station) == new_der)
    assert new_der != first
    assert cert_file.read_bytes() == chain
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not key_file.with_name("client.key.pending").exists()
    _carries_a_session(sim, csms)


def test_a_certificate_is_not_signed_for_a_kiosk_without_one(
    config: Config, tmp_path: Path, sims: list[Simulation], servers: list[ReferenceCsms]
) -> None:
    """Security profiles 1 and 2 present no client certificate: nothing to renew."""
    csms = ReferenceCsms(passwords={config.station.id: PASSWORD}).start()
    servers.append(csms)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=1,
        password_file=password_file(tmp_path),
    )
    sim = _kiosk(config, ocpp, tmp_path, sims)
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    assert _until(lambda: csms.connected(config.station.id))
    trigger = {"requestedMessage": "SignChargingStationCertificate"}
    assert csms.ask(config.station.id, "TriggerMessage", trigger)["status"] == "Rejected"
    answer = csms.ask(config.station.id, "CertificateSigned", {"certificateChain": "x"})
    assert answer["status"] == "Rejected"
