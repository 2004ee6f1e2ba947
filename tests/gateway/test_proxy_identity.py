"""A client certificate forwarded by a reverse proxy names a terminal only when the proxy is
trusted and the certificate passes the gateway's own checks (fleet CA, validity, CRL).

The fleet's CA, CRL and certificates are written by `provision_tls` (as `ev-terminal
provision --tls-host` writes them); trustme makes a CA that is not the fleet's. Headers are
URL-encoded the way nginx's `$ssl_client_escaped_cert` is (every reserved character escaped);
`tests/gateway/test_nginx_harness.py` feeds this class what a real nginx forwarded."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.datastructures import Headers

from gateway.proxy_identity import ForwardedCertificates, Refusal, parse_networks
from terminal.protection import certs

PROXY = "127.0.0.1"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    root = tmp_path / "pki"
    certs.provision_tls(root, fleet="test", devices=["K1", "K2"], server_hosts=["127.0.0.1"])
    return root


def forwarded(pem: bytes) -> dict[str, str]:
    return {"X-SSL-Client-Cert": quote(pem.decode("ascii"), safe="")}


def device_pem(pki: Path, name: str) -> bytes:
    return (pki / "devices" / name / certs.CLIENT_CERT_FILE).read_bytes()


def identities(
    pki: Path, *, at: datetime | None = None, trusted: tuple[str, ...] = ("127.0.0.1",)
) -> ForwardedCertificates:
    """The checker for the fleet in `pki`, its clock stopped at `at` (default: now, read when
    called, as the certificates were just issued from the real clock)."""
    stopped = at or datetime.now(UTC)
    return ForwardedCertificates(
        pki / "gateway" / certs.CA_FILE,
        pki / "gateway" / certs.CRL_FILE,
        parse_networks(trusted),
        lambda: stopped,
    )


def test_a_fleet_certificate_from_the_trusted_proxy_names_the_terminal(pki: Path) -> None:
    assert identities(pki).identity(PROXY, forwarded(device_pem(pki, "K1"))) == "K1"


@pytest.mark.parametrize("name", ["x-ssl-client-cert", "X-SSL-CLIENT-CERT"])
def test_the_header_name_is_case_blind(pki: Path, name: str) -> None:
    value = forwarded(device_pem(pki, "K2"))["X-SSL-Client-Cert"]

    assert identities(pki).identity(PROXY, {name: value}) == "K2"


def test_no_header_is_no_identity(pki: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert identities(pki).identity(PROXY, {"Host": "gateway"}) is None
    assert identities(pki).identity(PROXY, {"X-SSL-Client-Cert": ""}) is None
    assert caplog.records == []


@pytest.mark.parametrize("peer", ["192.0.2.7", "127.0.0.2", "::1", "not-an-address", ""])
def test_a_header_from_an_untrusted_peer_is_ignored_and_logged(
    pki: Path, caplog: pytest.LogCaptureFixture, peer: str
) -> None:
    found = identities(pki).identity(peer, forwarded(device_pem(pki, "K1")))

    assert found is None
    assert [r.getMessage() for r in caplog.records] == [
        f"event=forwarded_cert_ignored reason=untrusted_peer peer={peer}"
    ]


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [
        (("10.0.0.0/24",), "10.0.0.7"),
        (("127.0.0.1",), "::ffff:127.0.0.1"),
        (("::1", "127.0.0.1"), "::1"),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(
    pki: Path, trusted: tuple[str, ...], peer: str
) -> None:
    assert identities(pki, trusted=trusted).identity(peer, forwarded(device_pem(pki, "K1"))) == (
        "K1"
    )


def test_a_bad_trusted_proxy_value_is_named() -> None:
    with pytest.raises(
        ValueError, match=re.escape("'10.0.0.1/24' is not an IP address or network")
    ):
        parse_networks(["127.0.0.1", "10.0.0.1/24"])


def test_a_certificate_from_another_ca_is_refused(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = trustme.CA().issue_cert("K1")
    pem = foreign.cert_chain_pems[0].bytes()

    assert identities(pki).identity(PROXY, forwarded(pem)) == Refusal("unknown_issuer")
    assert "event=forwarded_cert_refused reason=unknown_issuer" in caplog.records[-1].getMessage()


def test_a_certificate_with_the_fleet_cas_name_but_another_key_is_refused(pki: Path) -> None:
    ca_cert = x509.load_pem_x509_certificate((pki / "gateway" / certs.CA_FILE).read_bytes())
    impostor = certs.issue_ca("test")
    assert impostor[0].subject == ca_cert.subject
    cert, _ = certs.issue_leaf(impostor, "K1")

    found = identities(pki).identity(PROXY, forwarded(cert.public_bytes(Encoding.PEM)))

    assert found == Refusal("unknown_issuer")


def test_a_revoked_certificate_is_refused(pki: Path) -> None:
    certs.revoke(pki, "K1")

    assert identities(pki).identity(PROXY, forwarded(device_pem(pki, "K1"))) == Refusal("revoked")
    assert identities(pki).identity(PROXY, forwarded(device_pem(pki, "K2"))) == "K2"


def test_a_revocation_is_seen_without_a_restart(pki: Path) -> None:
    forwarded_by = identities(pki)
    assert forwarded_by.identity(PROXY, forwarded(device_pem(pki, "K1"))) == "K1"

    certs.revoke(pki, "K1")

    assert forwarded_by.identity(PROXY, forwarded(device_pem(pki, "K1"))) == Refusal("revoked")


def test_everything_is_refused_once_the_crl_lapses(pki: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=certs.CRL_DAYS + 1)

    found = identities(pki, at=later).identity(PROXY, forwarded(device_pem(pki, "K1")))

    assert found == Refusal("crl_expired")


@pytest.mark.parametrize(
    ("not_before", "not_after", "reason"),
    [
        (timedelta(days=-10), timedelta(days=-1), "expired"),
        (timedelta(days=1), timedelta(days=10), "not_yet_valid"),
    ],
)
def test_a_certificate_outside_its_validity_is_refused(
    pki: Path, not_before: timedelta, not_after: timedelta, reason: str
) -> None:
    now = datetime.now(UTC)
    cert, _ = certs.issue_leaf(
        certs.load_ca(pki), "K1", not_before=now + not_before, not_after=now + not_after
    )

    found = identities(pki).identity(PROXY, forwarded(cert.public_bytes(Encoding.PEM)))

    assert found == Refusal(reason)


def test_a_server_certificate_is_not_a_terminal(pki: Path) -> None:
    pem = (pki / "gateway" / certs.SERVER_CERT_FILE).read_bytes()

    assert identities(pki).identity(PROXY, forwarded(pem)) == Refusal("not_for_clients")


@pytest.mark.parametrize(
    "value",
    [
        "not a certificate",
        quote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", safe=""),
        "%ZZ%ZZ",
        "%C3%28",  # not UTF-8
        "A" * 20_000,
    ],
)
def test_a_malformed_header_is_refused(pki: Path, value: str) -> None:
    found = identities(pki).identity(PROXY, {"X-SSL-Client-Cert": value})

    assert found == Refusal("malformed")


def test_without_a_crl_only_the_ca_and_validity_are_checked(pki: Path) -> None:
    certs.revoke(pki, "K1")
    forwarded_by = ForwardedCertificates(
        pki / "gateway" / certs.CA_FILE, None, parse_networks([PROXY]), lambda: datetime.now(UTC)
    )

    assert forwarded_by.identity(PROXY, forwarded(device_pem(pki, "K1"))) == "K1"


def test_nothing_is_logged_for_a_good_certificate(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    identities(pki).identity(PROXY, forwarded(device_pem(pki, "K1")))

    assert caplog.records == []


def test_starlette_headers_are_read_and_a_repeated_header_is_refused(pki: Path) -> None:
    value = forwarded(device_pem(pki, "K1"))["X-SSL-Client-Cert"]
    other = forwarded(device_pem(pki, "K2"))["X-SSL-Client-Cert"]
    once = Headers(raw=[(b"x-ssl-client-cert", value.encode())])
    twice = Headers(
        raw=[(b"x-ssl-client-cert", value.encode()), (b"x-ssl-client-cert", other.encode())]
    )

    assert identities(pki).identity(PROXY, once) == "K1"
    assert identities(pki).identity(PROXY, twice) == Refusal("repeated")
