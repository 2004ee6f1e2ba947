"""The production set-up end to end: the real gateway (`ev-terminal gateway`, a subprocess on a
loopback port) behind Debian's real nginx running the shipped configuration, with mutual TLS.

The fleet is made as an operator makes it: `ev-terminal provision --fleet … --tls-host`, then
`--revoke` for one terminal (its certificate onto the re-signed CRL). nginx asks terminals for
a fleet certificate and forwards the one it verified; the gateway reads the forwarded
certificate only from its trusted proxy (127.0.0.1) and verifies it again itself. What the
gateway did is read from its ledger (a SQLite file, and a real PostgreSQL server: every test
runs on both), so "never reached the gateway" is checked as "nothing in the ledger changed"."""

from __future__ import annotations

import http.client
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa
import trustme
from sqlalchemy.engine import Engine

from gateway.ledger import open_engine
from gateway.ledger import schema as tables
from terminal.protection import certs, provision
from tests.gateway.nginx import NginxFiles, RunningNginx, running_nginx
from tests.gateway.test_idempotency import capture as capture_body
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TERMINAL, OTHER, REVOKED = "KIOSK-0001", "KIOSK-0002", "KIOSK-0003"
UNTRUSTED_PEER = "127.0.0.2"  # loopback too, but not the configured trusted proxy
START_TIMEOUT_S = 60.0  # a gateway process takes 11 s or more to answer at load average 20
TIMEOUT_S = 10
# What the gateway wrote: every table a request can change (job leases move on their own).
LEDGER = (
    tables.authorizations,
    tables.movements,
    tables.idempotency,
    tables.events,
    tables.sim_payments,
    tables.sim_requests,
)


@dataclass(frozen=True, slots=True)
class Stack:
    """The fleet's files, the gateway's database, port and log, and nginx in front."""

    pki: Path
    engine: Engine
    gateway_port: int
    gateway_log: Path
    proxy: RunningNginx

    def cert(self, name: str) -> tuple[str, str]:
        d = self.pki / "devices" / name
        return str(d / certs.CLIENT_CERT_FILE), str(d / certs.CLIENT_KEY_FILE)

    def pem(self, name: str) -> bytes:
        return (self.pki / "devices" / name / certs.CLIENT_CERT_FILE).read_bytes()

    @property
    def ca(self) -> str:
        return str(self.pki / "gateway" / certs.CA_FILE)

    def ledger(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
                for table in LEDGER
            }

    def terminal_of(self, authorization_id: str) -> str | None:
        with self.engine.connect() as conn:
            found: str | None = conn.execute(
                sa.select(tables.authorizations.c.terminal_id).where(
                    tables.authorizations.c.id == authorization_id
                )
            ).scalar()
        return found

    def moves(self, authorization_id: str) -> list[tuple[str, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tables.movements.c.kind, tables.movements.c.amount)
                .where(tables.movements.c.authorization_id == authorization_id)
                .order_by(tables.movements.c.seq)
            )
            return [(kind, amount) for kind, amount in rows]


def _cli(*args: str) -> None:
    done = subprocess.run([str(BIN / "ev-terminal"), *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


def _fleet(root: Path) -> Path:
    """The fleet as the operator's CLI writes it, one terminal revoked afterwards."""
    pki = root / "fleet"
    made = provision.main(
        ["--out", str(pki), "--fleet", "test", "--tls-host", "127.0.0.1"]
        + [arg for name in (TERMINAL, OTHER, REVOKED) for arg in ("--device", name)]
    )
    assert made == 0
    assert provision.main(["--out", str(pki), "--revoke", REVOKED]) == 0
    return pki


def _wait_listening(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port the gateway announces once it listens (it was started on port 0), after its
    health check answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    marker = "gateway listening on http://127.0.0.1:"
    while True:
        text = log.read_text(errors="replace")
        if marker in text:
            port = int(text.split(marker, 1)[1].split()[0])
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    return port
            except requests.RequestException:
                pass  # listening, not yet serving
        assert process.poll() is None, f"the gateway exited with {process.returncode}: {text}"
        assert time.monotonic() < deadline, f"the gateway did not start: {text}"
        time.sleep(0.05)


def _database(request: pytest.FixtureRequest, root: Path) -> str:
    if request.param == "sqlite":
        return str(root / "gateway.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"behind-nginx-{request.param}")
    pki = _fleet(root)
    gateway_dir = pki / "gateway"
    db = _database(request, root)
    _cli("gateway", "migrate", "--db", db)
    log = root / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "ev-terminal"),
                "gateway",
                "--db",
                db,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--trusted-proxy",
                "127.0.0.1",
                "--client-ca",
                str(gateway_dir / certs.CA_FILE),
                "--crl",
                str(gateway_dir / certs.CRL_FILE),
                "--keys",
                str(gateway_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine = open_engine(db)
    try:
        port = _wait_listening(process, log)
        files = NginxFiles(
            server_cert=gateway_dir / certs.SERVER_CERT_FILE,
            server_key=gateway_dir / certs.SERVER_KEY_FILE,
            client_ca=gateway_dir / certs.CA_FILE,
            crl=gateway_dir / certs.CRL_FILE,
            # The public server's certificate would come from a public CA; the fleet's server
            # certificate stands in for it (the client is told to trust the fleet CA).
            public_cert=gateway_dir / certs.SERVER_CERT_FILE,
            public_key=gateway_dir / certs.SERVER_KEY_FILE,
        )
        with running_nginx(root / "nginx", files, upstream=("127.0.0.1", port)) as proxy:
            yield Stack(pki=pki, engine=engine, gateway_port=port, gateway_log=log, proxy=proxy)
    finally:
        engine.dispose()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_IDS = itertools.count(1)


def new_id() -> str:
    return f"nginx-auth-{next(_IDS):04d}"


def authorization(auth_id: str, terminal: str, minor: int = 5000) -> dict[str, Any]:
    """An RFID-style authorization: an id token carries no protected card data."""
    return {
        "authorization_id": auth_id,
        "terminal_id": terminal,
        "amount": {"minor": minor, "currency": "EUR"},
        "card": {
            "kind": "id_token",
            "token": "tok-0123456789abcdef",
            "brand": "RFID",
            "last4": "",
        },
    }


def capture(auth_id: str, minor: int) -> dict[str, Any]:
    body = capture_body(minor)
    receipt_id = "R" + auth_id.rsplit("-", 1)[1].rjust(11, "0")
    body["receipt"] = {**body["receipt"], "receipt_id": receipt_id, "card": "RFID"}
    return body


def post(
    url: str,
    body: dict[str, Any],
    *,
    ca: str,
    cert: tuple[str, str] | None,
    key: str,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(
        url,
        json=body,
        verify=ca,
        cert=cert,
        headers={"Idempotency-Key": key, "Connection": "close", **(headers or {})},
        timeout=TIMEOUT_S,
    )


def get(
    url: str, *, ca: str, cert: tuple[str, str] | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.get(
        url,
        verify=ca,
        cert=cert,
        headers={"Connection": "close", **(headers or {})},
        timeout=TIMEOUT_S,
    )


def held(stack: Stack, terminal: str) -> str:
    """A hold placed by `terminal` through nginx's terminal server."""
    auth_id = new_id()
    answer = post(
        stack.proxy.terminal_url + "/v1/authorizations",
        authorization(auth_id, terminal),
        ca=stack.ca,
        cert=stack.cert(terminal),
        key=f"{auth_id}:authorize",
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "approved", answer.text
    return auth_id


def code(answer: requests.Response) -> str:
    found: str = answer.json()["error"]["code"]
    return found


def direct(
    stack: Stack, method: str, path: str, headers: dict[str, str], *, source: str
) -> tuple[int, str]:
    """A request straight to the gateway's port (past nginx) from the loopback address
    `source`, as any local process could send it."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", stack.gateway_port, timeout=TIMEOUT_S, source_address=(source, 0)
    )
    try:
        conn.request(method, path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def forged(pem: bytes) -> dict[str, str]:
    """The header as nginx would set it ($ssl_client_escaped_cert), typed by someone else."""
    return {"X-SSL-Client-Cert": quote(pem.decode("ascii"), safe="")}


def test_a_terminal_authorizes_and_captures_and_the_ledger_names_its_certificate(
    stack: Stack,
) -> None:
    auth_id = held(stack, TERMINAL)
    captured = post(
        f"{stack.proxy.terminal_url}/v1/authorizations/{auth_id}/capture",
        capture(auth_id, 1234),
        ca=stack.ca,
        cert=stack.cert(TERMINAL),
        key=f"{auth_id}:capture",
    )
    read = get(
        f"{stack.proxy.terminal_url}/v1/authorizations/{auth_id}",
        ca=stack.ca,
        cert=stack.cert(TERMINAL),
    )

    assert captured.status_code == 200, captured.text
    assert captured.json()["amount_captured"] == {"minor": 1234, "currency": "EUR"}
    assert stack.terminal_of(auth_id) == TERMINAL
    assert stack.moves(auth_id) == [("hold", 5000), ("capture", 1234)]
    assert read.status_code == 200, read.text
    assert read.json()["terminal_id"] == TERMINAL


def test_a_body_naming_another_terminal_is_refused(stack: Stack) -> None:
    before = stack.ledger()
    auth_id = new_id()

    answer = post(
        stack.proxy.terminal_url + "/v1/authorizations",
        authorization(auth_id, OTHER),
        ca=stack.ca,
        cert=stack.cert(TERMINAL),
        key=f"{auth_id}:authorize",
    )

    assert (answer.status_code, code(answer)) == (403, "terminal_mismatch")
    assert stack.ledger() == before


def test_another_terminals_certificate_cannot_touch_the_hold(stack: Stack) -> None:
    auth_id = held(stack, TERMINAL)
    before = stack.ledger()
    base = f"{stack.proxy.terminal_url}/v1/authorizations/{auth_id}"

    captured = post(
        base + "/capture",
        capture(auth_id, 1000),
        ca=stack.ca,
        cert=stack.cert(OTHER),
        key=f"{auth_id}:capture",
    )
    voided = post(
        base + "/void",
        {"reason": "cancelled"},
        ca=stack.ca,
        cert=stack.cert(OTHER),
        key=f"{auth_id}:void",
    )
    read = get(base, ca=stack.ca, cert=stack.cert(OTHER))

    assert (captured.status_code, code(captured)) == (403, "terminal_mismatch")
    assert (voided.status_code, code(voided)) == (403, "terminal_mismatch")
    assert (read.status_code, code(read)) == (404, "unknown_authorization")
    assert stack.ledger() == before
    assert stack.moves(auth_id) == [("hold", 5000)]


def test_a_revoked_certificate_is_refused_by_nginx_and_never_reaches_the_gateway(
    stack: Stack,
) -> None:
    before = stack.ledger()
    auth_id = new_id()

    answer = post(
        stack.proxy.terminal_url + "/v1/authorizations",
        authorization(auth_id, REVOKED),
        ca=stack.ca,
        cert=stack.cert(REVOKED),
        key=f"{auth_id}:authorize",
    )

    # nginx answers 400 itself (its HTML page, not the gateway's JSON error).
    assert answer.status_code == 400
    assert "The SSL certificate error" in answer.text
    assert "certificate revoked" in stack.proxy.error_log()
    assert stack.ledger() == before


def test_a_foreign_certificate_is_refused_by_nginx_and_never_reaches_the_gateway(
    stack: Stack, tmp_path: Path
) -> None:
    # Another CA's certificate bearing a real terminal's name.
    foreign = trustme.CA().issue_cert(TERMINAL)
    cert, key = tmp_path / "foreign.pem", tmp_path / "foreign.key"
    foreign.cert_chain_pems[0].write_to_path(str(cert))
    foreign.private_key_pem.write_to_path(str(key))
    before = stack.ledger()
    auth_id = new_id()

    answer = post(
        stack.proxy.terminal_url + "/v1/authorizations",
        authorization(auth_id, TERMINAL),
        ca=stack.ca,
        cert=(str(cert), str(key)),
        key=f"{auth_id}:authorize",
    )

    assert answer.status_code == 400
    assert "The SSL certificate error" in answer.text
    assert "unable to verify the first certificate" in stack.proxy.error_log()
    assert stack.ledger() == before


def test_no_certificate_is_refused_on_the_terminal_server(stack: Stack) -> None:
    before = stack.ledger()
    auth_id = new_id()

    answer = post(
        stack.proxy.terminal_url + "/v1/authorizations",
        authorization(auth_id, TERMINAL),
        ca=stack.ca,
        cert=None,
        key=f"{auth_id}:authorize",
    )

    assert answer.status_code == 400
    assert "No required SSL certificate was sent" in answer.text
    assert stack.ledger() == before


def test_the_public_server_serves_receipts_and_no_terminal(stack: Stack) -> None:
    auth_id = held(stack, TERMINAL)
    body = capture(auth_id, 777)
    receipt_id = body["receipt"]["receipt_id"]
    captured = post(
        f"{stack.proxy.terminal_url}/v1/authorizations/{auth_id}/capture",
        body,
        ca=stack.ca,
        cert=stack.cert(TERMINAL),
        key=f"{auth_id}:capture",
    )
    assert captured.status_code == 200, captured.text
    before = stack.ledger()
    public = stack.proxy.public_url
    # The header nginx would forward for a genuine terminal certificate, sent by the client.
    header = forged(stack.pem(TERMINAL))

    page = get(f"{public}/receipts/{receipt_id}", ca=stack.ca)
    as_json = get(f"{public}/v1/receipts/{receipt_id}", ca=stack.ca)
    plain = post(
        public + "/v1/authorizations",
        authorization(new_id(), TERMINAL),
        ca=stack.ca,
        cert=None,
        key="public-plain",
    )
    with_header = post(
        public + "/v1/authorizations",
        authorization(new_id(), TERMINAL),
        ca=stack.ca,
        cert=None,
        key="public-forged",
        headers=header,
    )
    read_forged = get(f"{public}/v1/authorizations/{auth_id}", ca=stack.ca, headers=header)

    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "7.77" in page.text
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["total"] == 777
    assert (plain.status_code, code(plain)) == (401, "unauthenticated")
    assert (with_header.status_code, code(with_header)) == (401, "unauthenticated")
    assert (read_forged.status_code, code(read_forged)) == (401, "unauthenticated")
    assert stack.ledger() == before


def test_the_gateway_ignores_the_header_from_a_peer_that_is_not_its_proxy(stack: Stack) -> None:
    auth_id = held(stack, TERMINAL)
    path = f"/v1/authorizations/{auth_id}"
    before = stack.ledger()

    untrusted = direct(stack, "GET", path, forged(stack.pem(TERMINAL)), source=UNTRUSTED_PEER)
    # The same header from the trusted proxy's address is believed (this is why only nginx
    # may listen on 127.0.0.1 there) ...
    trusted = direct(stack, "GET", path, forged(stack.pem(TERMINAL)), source="127.0.0.1")
    # ... but the gateway still verifies what it is given: a revoked certificate is refused.
    revoked = direct(stack, "GET", path, forged(stack.pem(REVOKED)), source="127.0.0.1")

    assert untrusted[0] == 401, untrusted
    assert '"unauthenticated"' in untrusted[1]
    assert trusted[0] == 200, trusted
    assert revoked[0] == 403, revoked
    assert '"certificate_refused"' in revoked[1]
    assert "revoked" in revoked[1]
    log = stack.gateway_log.read_text(errors="replace")
    assert f"event=forwarded_cert_ignored reason=untrusted_peer peer={UNTRUSTED_PEER}" in log
    assert "event=forwarded_cert_refused reason=revoked peer=127.0.0.1" in log
    assert stack.ledger() == before
