"""`GET /v1/terminals/{id}/open-authorizations`: what a kiosk checks its journal against at
start-up (terminal/shell/journal_damage.py). Over mutual TLS, on both back-ends: a terminal
gets its own open holds (approved, not yet captured or released) and the newest authorization
it sent; another terminal's list is refused (403), and no certificate gets no answer. Reading
one authorization back (`GET /v1/authorizations/{id}`): another terminal's is unknown (404)."""

from __future__ import annotations

import pytest
import requests

from tests.gateway.terminal_tls import OTHER, STATION, TlsTerminals


def test_a_terminal_lists_its_own_open_holds_and_its_newest_authorization(
    tls_terminals: TlsTerminals,
) -> None:
    first = tls_terminals.hold(STATION, 1)
    second = tls_terminals.hold(STATION, 2)
    tls_terminals.void(STATION, second)
    tls_terminals.hold(OTHER, 3)

    answer = tls_terminals.get(STATION, f"/v1/terminals/{STATION}/open-authorizations")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["terminal_id"] == STATION
    assert [(a["authorization_id"], a["status"], a["amount"]) for a in body["authorizations"]] == [
        (first, "approved", {"minor": 5001, "currency": "EUR"})
    ]
    assert body["newest_authorization_id"] == second


def test_a_terminal_with_nothing_at_the_gateway_gets_an_empty_list(
    tls_terminals: TlsTerminals,
) -> None:
    answer = tls_terminals.get(STATION, f"/v1/terminals/{STATION}/open-authorizations")
    assert answer.json() == {
        "terminal_id": STATION,
        "authorizations": [],
        "newest_authorization_id": None,
    }


def test_another_terminals_list_is_refused(tls_terminals: TlsTerminals) -> None:
    tls_terminals.hold(OTHER, 3)
    answer = tls_terminals.get(STATION, f"/v1/terminals/{OTHER}/open-authorizations")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "terminal_mismatch"


def test_no_certificate_gets_no_answer(tls_terminals: TlsTerminals) -> None:
    kw = tls_terminals.calls_as(STATION)
    del kw["cert"]
    url = f"{tls_terminals.gateway.url}/v1/terminals/{STATION}/open-authorizations"
    with pytest.raises(requests.exceptions.ConnectionError):  # TLS refused (1.3: after hello)
        requests.get(url, **kw)


def test_a_terminal_reads_back_its_own_authorization_and_not_anothers(
    tls_terminals: TlsTerminals,
) -> None:
    """`GET /v1/authorizations/{id}`: a terminal's own, and another terminal's as unknown
    (404, so an id tells nothing of another kiosk)."""
    mine = tls_terminals.hold(STATION, 1)
    theirs = tls_terminals.hold(OTHER, 2)
    own = tls_terminals.get(STATION, f"/v1/authorizations/{mine}")
    assert own.status_code == 200, own.text
    assert (own.json()["id"], own.json()["terminal_id"]) == (mine, STATION)
    other = tls_terminals.get(STATION, f"/v1/authorizations/{theirs}")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "unknown_authorization"
    assert theirs not in other.text
