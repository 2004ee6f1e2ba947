"""Terminals calling the gateway's terminal API over mutual TLS: a fleet's CA, CRL and
certificates for two kiosks (`certs.provision_tls`), a gateway serving with them on either
back-end, and calls made with one kiosk's client certificate. The `tls_terminals` fixture in
this folder's conftest gives one for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from gateway.server import EmbeddedGateway
from gateway.tls import ServerTLS
from terminal.protection import certs

STATION, OTHER = "KIOSK-0001", "KIOSK-0002"
TOKEN = "tok-rfid-0123456789abcdef"


@dataclass(frozen=True)
class TlsTerminals:
    """A gateway over mutual TLS and the certificates of `STATION` and `OTHER` under `pki`."""

    gateway: EmbeddedGateway
    pki: Path

    def calls_as(self, terminal: str, *, key: str | None = None) -> dict[str, Any]:
        """`requests`' keyword arguments for a call with `terminal`'s certificate, with an
        ``Idempotency-Key`` when `key` is given."""
        d = self.pki / "devices" / terminal
        headers = {"Connection": "close"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return {
            "verify": str(d / certs.CA_FILE),
            "cert": (str(d / certs.CLIENT_CERT_FILE), str(d / certs.CLIENT_KEY_FILE)),
            "timeout": 10,
            "headers": headers,
        }

    def get(self, terminal: str, path: str) -> requests.Response:
        return requests.get(self.gateway.url + path, **self.calls_as(terminal))

    def post(self, terminal: str, path: str, *, key: str, body: Any) -> requests.Response:
        return requests.post(self.gateway.url + path, json=body, **self.calls_as(terminal, key=key))

    def hold(self, terminal: str, n: int, *, token: str = TOKEN) -> str:
        """`terminal`'s approved hold number `n` on an RFID `token`, for 50.00 EUR plus `n`
        cents (so a list shows which hold is which); its authorization id."""
        auth_id = f"{terminal.lower()}-{n:08d}-0000-4000-8000-000000000000"
        body = {
            "authorization_id": auth_id,
            "terminal_id": terminal,
            "amount": {"minor": 5000 + n, "currency": "EUR"},
            "card": {"kind": "id_token", "token": token, "brand": "RFID", "last4": ""},
        }
        answer = self.post(terminal, "/v1/authorizations", key=f"{auth_id}:authorize", body=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "approved"
        return auth_id

    def void(self, terminal: str, auth_id: str) -> None:
        path = f"/v1/authorizations/{auth_id}/void"
        answer = self.post(terminal, path, key=f"{auth_id}:void", body={"reason": "test"})
        assert answer.status_code == 200, answer.text


def provision(root: Path) -> Path:
    """The fleet's CA, CRL, the gateway's server certificate for 127.0.0.1 and the client
    certificates of `STATION` and `OTHER`, written under `root`."""
    certs.provision_tls(root, fleet="test", devices=[STATION, OTHER], server_hosts=["127.0.0.1"])
    return root


def server_tls(root: Path) -> ServerTLS:
    """The gateway's side of mutual TLS from what `provision` wrote under `root`: its
    certificate, and every caller asked for one of the fleet's, the CRL checked."""
    gateway = root / "gateway"
    return ServerTLS(
        certfile=gateway / certs.SERVER_CERT_FILE,
        keyfile=gateway / certs.SERVER_KEY_FILE,
        client_ca=gateway / certs.CA_FILE,
        crl_file=gateway / certs.CRL_FILE,
    )


@contextmanager
def tls_terminals_at(db_url: str, root: Path) -> Iterator[TlsTerminals]:
    """A gateway on `db_url` over mutual TLS with a fleet provisioned under `root`."""
    gw = EmbeddedGateway(db_url=db_url, tls=server_tls(provision(root)))
    gw.up()
    try:
        yield TlsTerminals(gateway=gw, pki=root)
    finally:
        gw.close()
