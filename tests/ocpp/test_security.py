"""The OCPP security profiles over real TLS on loopback (certificates from `trustme`): basic
auth over TLS (2) and client certificates (3) connect and carry a session; a wrong password,
a CSMS certificate from another CA, or a client certificate for another station do not."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

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
