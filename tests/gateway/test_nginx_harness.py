"""The shipped nginx configuration, run by Debian's real nginx in front of a small upstream
that records what reaches it: mutual TLS for terminals, a public server without client
certificates, and an X-SSL-Client-Cert header nobody can forge.

The fleet's files come from `provision_tls`; trustme makes a CA that is not the fleet's. The
upstream is a stdlib HTTP server on 127.0.0.1 that echoes the forwarded header."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from gateway.proxy_identity import ForwardedCertificates, parse_networks
from terminal.protection import certs
from tests.gateway.nginx import NginxFiles, RunningNginx, running_nginx

FORGED = "forged-by-the-client"


@dataclass
class Upstream:
    """What reached the upstream: one dict per request (path and the forwarded header)."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    recorded = Upstream(port=0)

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # nginx keeps upstream connections alive

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen = {"path": self.path, "cert": self.headers.get("X-SSL-Client-Cert")}
            recorded.seen.append(seen)
            body = json.dumps(seen).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `seen`, not stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    recorded.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorded
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    root = tmp_path / "pki"
    certs.provision_tls(root, fleet="test", devices=["K1", "K2"], server_hosts=["127.0.0.1"])
    certs.revoke(root, "K2")
    return root


@pytest.fixture
def proxy(tmp_path: Path, pki: Path, upstream: Upstream) -> Iterator[RunningNginx]:
    gateway = pki / "gateway"
    files = NginxFiles(
        server_cert=gateway / certs.SERVER_CERT_FILE,
        server_key=gateway / certs.SERVER_KEY_FILE,
        client_ca=gateway / certs.CA_FILE,
        crl=gateway / certs.CRL_FILE,
        public_cert=gateway / certs.SERVER_CERT_FILE,
        public_key=gateway / certs.SERVER_KEY_FILE,
    )
    with running_nginx(tmp_path / "nginx", files, upstream=("127.0.0.1", upstream.port)) as run:
        yield run


def client(pki: Path, name: str) -> tuple[str, str]:
    d = pki / "devices" / name
    return str(d / certs.CLIENT_CERT_FILE), str(d / certs.CLIENT_KEY_FILE)


def get(
    url: str,
    pki: Path,
    cert: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.get(
        url,
        verify=str(pki / "gateway" / certs.CA_FILE),
        cert=cert,
        headers={"Connection": "close", **(headers or {})},
        timeout=10,
    )


def test_a_fleet_certificate_reaches_the_upstream_and_names_the_terminal(
    proxy: RunningNginx, pki: Path, upstream: Upstream
) -> None:
    answer = get(proxy.terminal_url + "/v1/ping", pki, client(pki, "K1"))

    assert answer.status_code == 200
    assert [seen["path"] for seen in upstream.seen] == ["/v1/ping"]
    header = upstream.seen[0]["cert"]
    assert header.startswith("-----BEGIN%20CERTIFICATE-----")  # nginx's URL-encoded PEM
    # What the real nginx forwards is what the gateway's proxy identity reads.
    identities = ForwardedCertificates(
        pki / "gateway" / certs.CA_FILE,
        pki / "gateway" / certs.CRL_FILE,
        parse_networks(["127.0.0.1"]),
        lambda: datetime.now(UTC),
    )
    assert identities.identity("127.0.0.1", {"X-SSL-Client-Cert": header}) == "K1"


def test_a_revoked_certificate_is_refused_by_nginx(
    proxy: RunningNginx, pki: Path, upstream: Upstream
) -> None:
    answer = get(proxy.terminal_url + "/v1/ping", pki, client(pki, "K2"))

    assert answer.status_code == 400
    assert "certificate" in answer.text
    assert upstream.seen == []
    assert "certificate revoked" in proxy.error_log()


def test_a_foreign_certificate_is_refused_by_nginx(
    proxy: RunningNginx, pki: Path, upstream: Upstream, tmp_path: Path
) -> None:
    foreign = trustme.CA().issue_cert("K1")
    cert, key = tmp_path / "foreign.pem", tmp_path / "foreign.key"
    foreign.cert_chain_pems[0].write_to_path(str(cert))
    foreign.private_key_pem.write_to_path(str(key))

    answer = get(proxy.terminal_url + "/v1/ping", pki, (str(cert), str(key)))

    # nginx finishes the handshake and answers 400 itself (ngx_http_ssl_module,
    # ssl_verify_client): the request never reaches the gateway.
    assert answer.status_code == 400
    assert upstream.seen == []
    assert "unable to verify the first certificate" in proxy.error_log()


def test_no_certificate_is_refused_for_terminals_and_fine_for_the_public(
    proxy: RunningNginx, pki: Path, upstream: Upstream
) -> None:
    refused = get(proxy.terminal_url + "/v1/ping", pki)
    public = get(proxy.public_url + "/receipts/abc", pki)

    assert refused.status_code == 400
    assert "No required SSL certificate" in refused.text
    assert public.status_code == 200
    assert upstream.seen == [{"path": "/receipts/abc", "cert": None}]


def test_a_forged_header_never_reaches_the_upstream(
    proxy: RunningNginx, pki: Path, upstream: Upstream
) -> None:
    public = get(proxy.public_url + "/receipts/abc", pki, None, {"X-SSL-Client-Cert": FORGED})
    terminal = get(
        proxy.terminal_url + "/v1/ping", pki, client(pki, "K1"), {"X-SSL-Client-Cert": FORGED}
    )
    no_cert = get(proxy.terminal_url + "/v1/ping", pki, None, {"x-ssl-client-cert": FORGED})

    assert (public.status_code, terminal.status_code, no_cert.status_code) == (200, 200, 400)
    assert len(upstream.seen) == 2
    assert upstream.seen[0]["cert"] is None
    assert upstream.seen[1]["cert"].startswith("-----BEGIN%20CERTIFICATE-----")
    assert all(FORGED not in json.dumps(seen) for seen in upstream.seen)


def test_a_body_over_one_mebibyte_is_refused_by_nginx(
    proxy: RunningNginx, pki: Path, upstream: Upstream
) -> None:
    limit = 1024 * 1024
    cert = client(pki, "K1")
    verify = str(pki / "gateway" / certs.CA_FILE)
    url = proxy.terminal_url + "/v1/authorizations"

    at_limit = requests.post(url, data=b"x" * limit, cert=cert, verify=verify, timeout=10)
    over = requests.post(url, data=b"x" * (limit + 1), cert=cert, verify=verify, timeout=10)

    assert (at_limit.status_code, over.status_code) == (200, 413)
    assert len(upstream.seen) == 1


def test_a_lapsed_crl_refuses_every_terminal_at_nginx(
    tmp_path: Path, pki: Path, upstream: Upstream
) -> None:
    gateway = pki / "gateway"
    lapsed = tmp_path / "lapsed-crl.pem"
    lapsed.write_bytes(certs.crl(certs.load_ca(pki), [], now=datetime(2020, 1, 1, tzinfo=UTC)))
    files = NginxFiles(
        server_cert=gateway / certs.SERVER_CERT_FILE,
        server_key=gateway / certs.SERVER_KEY_FILE,
        client_ca=gateway / certs.CA_FILE,
        crl=lapsed,
        public_cert=gateway / certs.SERVER_CERT_FILE,
        public_key=gateway / certs.SERVER_KEY_FILE,
    )

    with running_nginx(tmp_path / "nginx", files, upstream=("127.0.0.1", upstream.port)) as run:
        answer = get(run.terminal_url + "/v1/ping", pki, client(pki, "K1"))
        log = run.error_log()

    assert answer.status_code == 400
    assert upstream.seen == []
    assert "CRL has expired" in log
