"""Mutual TLS between the kiosk and the gateway, over real TLS on 127.0.0.1.

The fleet's certificates are made in the test (`terminal.protection.certs`, and trustme for a
CA that is not the fleet's). The kiosk runs on the simulator with a manual clock against an
embedded gateway serving HTTPS with client certificates required. A terminal whose certificate
is missing, expired, from another CA or revoked gets no answer (the handshake or the
connection is refused): the driver sees "no answer", nothing is held, nothing approved."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import trustme

from gateway.server import EmbeddedGateway
from hardware.clock import ManualClock
from hardware.sim.card_script import load_profiles
from terminal.config import Config, GatewayConfig, parse
from terminal.errors import ConfigError
from terminal.protection import certs
from terminal.shell.daemon import Daemon
from terminal.station import SimHardware, build_daemon, sim_keys
from tests.conftest import EXAMPLE_CONFIG
from tests.gateway.terminal_tls import OTHER, STATION, provision, server_tls


@dataclass
class Kiosk:
    """One kiosk on the simulator, stepped by hand (a small script runner)."""

    daemon: Daemon
    hardware: SimHardware
    clock: ManualClock

    def settle(self) -> None:
        for _ in range(1000):
            busy = self.daemon.poll_devices()
            busy |= self.daemon.pump() > 0
            busy |= self.daemon.sender.drain_safely().sent > 0
            busy |= self.daemon.pump() > 0
            if not busy:
                return
        raise AssertionError("the kiosk did not settle")

    def wait(self, ms: int) -> None:
        end = self.clock.monotonic_ms() + ms
        while (now := self.clock.monotonic_ms()) < end:
            due = self.daemon.timers.next_due()
            self.clock.advance(end - now if due is None else max(1, min(end, due) - now))
            self.settle()

    def tap(self, card: str) -> None:
        self.hardware.reader.present(load_profiles()[card].card())
        self.settle()

    def screen(self) -> str | None:
        shown = self.hardware.display.current
        return shown.name if shown is not None else None


MakeKiosk = Callable[[Config], Kiosk]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return provision(tmp_path / "pki")


@pytest.fixture
def gateway(tmp_path: Path, pki: Path, config: Config) -> Iterator[EmbeddedGateway]:
    _, gateway_keys = sim_keys(tmp_path / "kiosk", config.station.id)
    gw = EmbeddedGateway(
        tmp_path / "gateway.sqlite3",
        key_dir=gateway_keys,
        tls=server_tls(pki),
    )
    gw.up()
    yield gw
    gw.close()


def tls_config(
    config: Config, gw: EmbeddedGateway, ca: Path, cert: Path | None, key: Path | None
) -> Config:
    gateway = GatewayConfig(
        url=gw.url,
        receipt_url=gw.url + "/receipts",
        timeout_ms=2_000,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
    )
    return replace(config, gateway=gateway)


@pytest.fixture
def make_kiosk(tmp_path: Path, gateway: EmbeddedGateway) -> Iterator[MakeKiosk]:
    made: list[Kiosk] = []

    def make(config: Config) -> Kiosk:
        clock = ManualClock()
        hardware = SimHardware.build(clock)
        data = tmp_path / "kiosk"
        key_dir, _ = sim_keys(data, config.station.id)
        ids = iter(f"tls-{n:08d}-0000-4000-8000-000000000000" for n in range(1, 100))
        daemon = build_daemon(
            config=replace(config, data_dir=data / f"run{len(made)}"),
            devices=hardware.devices(),
            clock=clock,
            gateway_url=config.gateway.url,
            key_dir=key_dir,
            new_id=lambda: next(ids),
        )
        daemon.start()
        kiosk = Kiosk(daemon=daemon, hardware=hardware, clock=clock)
        kiosk.settle()
        made.append(kiosk)
        return kiosk

    yield make
    for kiosk in made:
        kiosk.daemon.sender.client.http.close()  # no idle TLS connection holds the gateway up
        kiosk.daemon.journal.close()


def device(pki: Path, name: str) -> tuple[Path, Path, Path]:
    d = pki / "devices" / name
    return d / certs.CA_FILE, d / certs.CLIENT_CERT_FILE, d / certs.CLIENT_KEY_FILE


def healthz(gw: EmbeddedGateway, ca: Path, cert: Path, key: Path) -> requests.Response:
    """GET /healthz as a terminal (the connection is not kept for reuse)."""
    return requests.get(
        gw.url + "/healthz",
        verify=str(ca),
        cert=(str(cert), str(key)),
        headers={"Connection": "close"},
        timeout=5,
    )


def test_a_session_over_mutual_tls_is_captured_and_recorded_for_the_certificate(
    config: Config, gateway: EmbeddedGateway, pki: Path, make_kiosk: MakeKiosk
) -> None:
    kiosk = make_kiosk(tls_config(config, gateway, *device(pki, STATION)))
    assert kiosk.screen() == "idle"
    kiosk.tap("visa")
    assert kiosk.screen() == "plug-in"
    kiosk.hardware.vehicle.plug()
    kiosk.hardware.vehicle.charge()
    kiosk.settle()
    assert kiosk.screen() == "charging"
    kiosk.wait(30 * 60_000)
    kiosk.tap("visa")
    assert kiosk.screen() == "receipt"
    [row] = gateway.ledger.all_authorizations()
    assert row["terminal_id"] == STATION
    assert row["status"] == "captured"
    assert row["amount_captured"] > 0
    assert kiosk.daemon.sender.reachable


def assert_no_answer(kiosk: Kiosk, gateway: EmbeddedGateway) -> None:
    kiosk.tap("visa")
    assert kiosk.screen() == "no-answer"
    assert kiosk.hardware.contactor.history.count("close") == 0
    assert gateway.ledger.all_authorizations() == []
    assert gateway.ledger.all_movements() == []
    assert kiosk.daemon.sender.reachable is False


def test_a_terminal_without_a_client_certificate_gets_no_answer(
    config: Config, gateway: EmbeddedGateway, pki: Path, make_kiosk: MakeKiosk
) -> None:
    ca, _, _ = device(pki, STATION)
    kiosk = make_kiosk(tls_config(config, gateway, ca, None, None))
    assert_no_answer(kiosk, gateway)


def test_an_expired_client_certificate_gets_no_answer(
    config: Config, gateway: EmbeddedGateway, pki: Path, tmp_path: Path, make_kiosk: MakeKiosk
) -> None:
    now = datetime.now(UTC)
    cert, key = certs.issue_leaf(
        certs.load_ca(pki), STATION, not_before=now - timedelta(days=30), not_after=now
    )
    certs.write_cert(tmp_path / "expired.pem", cert)
    certs.write_key(tmp_path / "expired.key", key)
    ca, _, _ = device(pki, STATION)
    cfg = tls_config(config, gateway, ca, tmp_path / "expired.pem", tmp_path / "expired.key")
    assert_no_answer(make_kiosk(cfg), gateway)


def test_a_client_certificate_from_another_ca_gets_no_answer(
    config: Config, gateway: EmbeddedGateway, pki: Path, tmp_path: Path, make_kiosk: MakeKiosk
) -> None:
    stranger = trustme.CA().issue_cert("kiosk.example", common_name=STATION)
    stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
    stranger.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
    (tmp_path / "stranger.key").chmod(0o600)
    ca, _, _ = device(pki, STATION)
    cfg = tls_config(config, gateway, ca, tmp_path / "stranger.pem", tmp_path / "stranger.key")
    assert_no_answer(make_kiosk(cfg), gateway)


def test_a_revoked_client_certificate_gets_no_answer_without_a_gateway_restart(
    config: Config, gateway: EmbeddedGateway, pki: Path, make_kiosk: MakeKiosk
) -> None:
    ca, cert, key = device(pki, STATION)
    # The gateway works for this terminal first...
    assert healthz(gateway, ca, cert, key).status_code == 200
    certs.revoke(pki, STATION)
    # ...and refuses the very next connection once the CRL lists the certificate.
    with pytest.raises(requests.ConnectionError):
        healthz(gateway, ca, cert, key)
    assert_no_answer(make_kiosk(tls_config(config, gateway, ca, cert, key)), gateway)
    # Another terminal of the fleet is not affected.
    ca2, cert2, key2 = device(pki, OTHER)
    assert healthz(gateway, ca2, cert2, key2).ok


def test_a_stale_crl_refuses_every_terminal(gateway: EmbeddedGateway, pki: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=60)
    crl = pki / "gateway" / certs.CRL_FILE
    crl.write_bytes(certs.crl(certs.load_ca(pki), [], now=old, days=30))
    ca, cert, key = device(pki, STATION)
    with pytest.raises(requests.ConnectionError):
        healthz(gateway, ca, cert, key)


def test_the_terminal_pins_the_fleet_ca_for_the_gateway(
    config: Config, gateway: EmbeddedGateway, pki: Path, tmp_path: Path, make_kiosk: MakeKiosk
) -> None:
    """A gateway certificate from any other CA (here: trustme's) is not trusted."""
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    _, cert, key = device(pki, STATION)
    cfg = tls_config(config, gateway, tmp_path / "other-ca.pem", cert, key)
    assert_no_answer(make_kiosk(cfg), gateway)


def test_a_body_naming_another_terminal_is_refused(
    config: Config, gateway: EmbeddedGateway, pki: Path, make_kiosk: MakeKiosk
) -> None:
    """The certificate says KIOSK-0002, the body says KIOSK-0001: a definite refusal (403),
    never a hold; the driver sees "declined"."""
    kiosk = make_kiosk(tls_config(config, gateway, *device(pki, OTHER)))
    kiosk.tap("visa")
    assert kiosk.screen() == "declined"
    assert gateway.ledger.all_authorizations() == []
    [row] = [r for r in kiosk.daemon.journal.outbox() if r["kind"] == "authorize"]
    assert row["state"] == "failed"
    assert "terminal_mismatch" in row["answer"]


def test_plain_http_is_not_served_on_the_tls_port(gateway: EmbeddedGateway) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(gateway.url.replace("https:", "http:") + "/healthz", timeout=5)


# -- the [gateway] TLS keys -----------------------------------------------------------------


def gateway_section(tmp_path: Path, **keys: str) -> dict[str, object]:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["gateway"] = {"url": "https://gateway.example", **keys}
    return data


def test_tls_files_are_read_from_the_config_relative_to_it(tmp_path: Path, pki: Path) -> None:
    ca, cert, key = device(pki, STATION)
    cfg = parse(
        gateway_section(tmp_path, ca_file=str(ca), cert_file=str(cert), key_file=str(key)),
        base=tmp_path,
    )
    assert (cfg.gateway.ca_file, cfg.gateway.cert_file, cfg.gateway.key_file) == (ca, cert, key)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({}, "gateway.ca_file"),  # https pins the gateway's CA
        ({"ca_file": "missing.pem"}, "gateway.ca_file"),
        ({"ca_file": "CA", "cert_file": "CERT"}, "gateway.key_file"),
        ({"ca_file": "CA", "key_file": "KEY"}, "gateway.cert_file"),
        ({"ca_file": "CA", "cert_file": "CERT", "key_file": "OPEN"}, "gateway.key_file"),
    ],
)
def test_bad_tls_keys_name_the_key(
    tmp_path: Path, pki: Path, keys: dict[str, str], named: str
) -> None:
    ca, cert, key = device(pki, STATION)
    (tmp_path / "open.key").write_bytes(key.read_bytes())
    (tmp_path / "open.key").chmod(0o644)
    files = {"CA": str(ca), "CERT": str(cert), "KEY": str(key), "OPEN": str(tmp_path / "open.key")}
    section = {k: files.get(v, v) for k, v in keys.items()}
    with pytest.raises(ConfigError) as raised:
        parse(gateway_section(tmp_path, **section), base=tmp_path)
    assert raised.value.key == named


def test_tls_files_need_an_https_url(tmp_path: Path, pki: Path) -> None:
    ca, _, _ = device(pki, STATION)
    data = gateway_section(tmp_path, ca_file=str(ca))
    data["gateway"]["url"] = "http://gateway.example"  # type: ignore[index]
    with pytest.raises(ConfigError) as raised:
        parse(data, base=tmp_path)
    assert raised.value.key == "gateway.ca_file"
