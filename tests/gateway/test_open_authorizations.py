"""`GET /v1/terminals/{id}/open-authorizations`: what a kiosk checks its journal against at
start-up (terminal/shell/journal_damage.py). Over mutual TLS, on both back-ends: a terminal
gets its own open holds (approved, not yet captured or released) and the newest authorization
it sent; another terminal's list is refused (403), and no certificate gets no answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.server import EmbeddedGateway
from gateway.tls import ServerTLS
from terminal.protection import certs

STATION, OTHER = "KIOSK-0001", "KIOSK-0002"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    root = tmp_path / "pki"
    certs.provision_tls(root, fleet="test", devices=[STATION, OTHER], server_hosts=["127.0.0.1"])
    return root


@pytest.fixture
def gateway(db_url: str, pki: Path) -> Iterator[EmbeddedGateway]:
    gw = EmbeddedGateway(
        db_url=db_url,
        tls=ServerTLS(
            certfile=pki / "gateway" / certs.SERVER_CERT_FILE,
            keyfile=pki / "gateway" / certs.SERVER_KEY_FILE,
            client_ca=pki / "gateway" / certs.CA_FILE,
            crl_file=pki / "gateway" / certs.CRL_FILE,
        ),
    )
    gw.up()
    yield gw
    gw.close()


def _as(pki: Path, terminal: str) -> dict[str, Any]:
    d = pki / "devices" / terminal
    return {
        "verify": str(d / certs.CA_FILE),
        "cert": (str(d / certs.CLIENT_CERT_FILE), str(d / certs.CLIENT_KEY_FILE)),
        "timeout": 10,
        "headers": {"Connection": "close"},
    }


def _hold(gw: EmbeddedGateway, pki: Path, terminal: str, n: int) -> str:
    auth_id = f"{terminal.lower()}-{n:08d}-0000-4000-8000-000000000000"
    body = {
        "authorization_id": auth_id,
        "terminal_id": terminal,
        "amount": {"minor": 5000 + n, "currency": "EUR"},
        "card": {"kind": "id_token", "token": "tok-0123456789abcdef", "brand": "RFID", "last4": ""},
    }
    kw = _as(pki, terminal)
    kw["headers"] = {**kw["headers"], "Idempotency-Key": f"{auth_id}:authorize"}
    answer = requests.post(gw.url + "/v1/authorizations", json=body, **kw)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "approved"
    return auth_id


def _void(gw: EmbeddedGateway, pki: Path, terminal: str, auth_id: str) -> None:
    kw = _as(pki, terminal)
    kw["headers"] = {**kw["headers"], "Idempotency-Key": f"{auth_id}:void"}
    answer = requests.post(
        f"{gw.url}/v1/authorizations/{auth_id}/void", json={"reason": "test"}, **kw
    )
    assert answer.status_code == 200, answer.text


def test_a_terminal_lists_its_own_open_holds_and_its_newest_authorization(
    gateway: EmbeddedGateway, pki: Path
) -> None:
    first = _hold(gateway, pki, STATION, 1)
    second = _hold(gateway, pki, STATION, 2)
    _void(gateway, pki, STATION, second)
    _hold(gateway, pki, OTHER, 3)

    answer = requests.get(
        f"{gateway.url}/v1/terminals/{STATION}/open-authorizations", **_as(pki, STATION)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["terminal_id"] == STATION
    assert [(a["authorization_id"], a["status"], a["amount"]) for a in body["authorizations"]] == [
        (first, "approved", {"minor": 5001, "currency": "EUR"})
    ]
    assert body["newest_authorization_id"] == second


def test_a_terminal_with_nothing_at_the_gateway_gets_an_empty_list(
    gateway: EmbeddedGateway, pki: Path
) -> None:
    answer = requests.get(
        f"{gateway.url}/v1/terminals/{STATION}/open-authorizations", **_as(pki, STATION)
    )
    assert answer.json() == {
        "terminal_id": STATION,
        "authorizations": [],
        "newest_authorization_id": None,
    }


def test_another_terminals_list_is_refused(gateway: EmbeddedGateway, pki: Path) -> None:
    _hold(gateway, pki, OTHER, 3)
    answer = requests.get(
        f"{gateway.url}/v1/terminals/{OTHER}/open-authorizations", **_as(pki, STATION)
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "terminal_mismatch"


def test_no_certificate_gets_no_answer(gateway: EmbeddedGateway, pki: Path) -> None:
    kw = _as(pki, STATION)
    del kw["cert"]
    with pytest.raises(requests.exceptions.ConnectionError):  # TLS refused (1.3: after hello)
        requests.get(f"{gateway.url}/v1/terminals/{STATION}/open-authorizations", **kw)
