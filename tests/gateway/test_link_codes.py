"""`POST /v1/link-codes` over mutual TLS, on both back-ends: a terminal gets a one-time code
for the card of its own authorization (in the contract's shape), only the code's hash is
stored (not in `link_codes`, not in the idempotency store), a new code replaces the token's
last one, the same request is never answered with the code again, and another terminal's
authorization or an unknown one gets no code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from gateway.ledger import open_engine
from gateway.ledger.link_codes import LinkCodes, digest
from gateway.ledger.schema import idempotency
from gateway.ledger.web_schema import link_codes
from gateway.server import EmbeddedGateway
from tests.gateway.terminal_tls import OTHER, STATION, TOKEN, TlsTerminals
from tests.test_contract import committed, documented_answer


def _ask(terminals: TlsTerminals, terminal: str, auth_id: str, key: str) -> requests.Response:
    body = {"terminal_id": terminal, "authorization_id": auth_id}
    return terminals.post(terminal, "/v1/link-codes", key=key, body=body)


def test_a_terminal_gets_a_code_for_its_own_authorization_and_only_its_hash_is_kept(
    tls_terminals: TlsTerminals, db_url: str
) -> None:
    auth_id = tls_terminals.hold(STATION, 1)
    answer = _ask(tls_terminals, STATION, auth_id, "link-1")
    assert answer.status_code == 200, answer.text
    validator = documented_answer(committed(), "/v1/link-codes", 200)
    assert list(validator.iter_errors(answer.json())) == []
    code = answer.json()["code"]
    assert 0 < answer.json()["expires_in_ms"] <= 5 * 60_000
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(link_codes)).all()
            keys = conn.execute(sa.select(idempotency)).all()
    finally:
        engine.dispose()
    assert [(r.card_token, r.code_sha256, r.authorization_id) for r in rows] == [
        (TOKEN, digest(code), auth_id)
    ]
    stored = " ".join(str(v) for row in [*rows, *keys] for v in row)
    assert code not in stored
    # The same request again: never the code (the gateway has no copy), the 409 stored.
    again = _ask(tls_terminals, STATION, auth_id, "link-1")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "link_code_shown_once"
    assert code not in again.text
    # The same key with another body: refused like on every POST.
    other = tls_terminals.hold(STATION, 2, token="tok-rfid-other")
    reused = _ask(tls_terminals, STATION, other, "link-1")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_a_new_code_replaces_the_tokens_last_one(tls_terminals: TlsTerminals, db_url: str) -> None:
    first_auth = tls_terminals.hold(STATION, 1)
    second_auth = tls_terminals.hold(STATION, 2)  # the same token, a later session
    first = _ask(tls_terminals, STATION, first_auth, "link-a").json()["code"]
    second = _ask(tls_terminals, STATION, second_auth, "link-b").json()["code"]
    assert first != second
    engine = open_engine(db_url)
    try:
        codes = LinkCodes(engine, tls_terminals.gateway.built.ledger.clock)
        assert codes.use(first) is None
        used = codes.use(second)
        assert used is not None
        assert (used.card_token, used.card_kind, used.last4) == (TOKEN, "id_token", "")
        assert codes.use(second) is None  # once
    finally:
        engine.dispose()


def test_no_code_for_another_terminals_or_an_unknown_authorization(
    tls_terminals: TlsTerminals,
) -> None:
    theirs = tls_terminals.hold(OTHER, 1)
    refused = _ask(tls_terminals, STATION, theirs, "link-x")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "unknown_authorization"
    unknown = _ask(tls_terminals, STATION, "kiosk-0001-99999999-none", "link-y")
    assert unknown.status_code == 404
    # A body naming another terminal than the certificate's: 403 before anything is stored.
    named = tls_terminals.post(
        STATION,
        "/v1/link-codes",
        key="link-z",
        body={"terminal_id": OTHER, "authorization_id": theirs},
    )
    assert named.status_code == 403
    assert named.json()["error"]["code"] == "terminal_mismatch"


def test_a_code_expires_after_five_minutes(db_url: str) -> None:
    """The lifetime on the gateway's clock (the development mode: no certificate, any
    terminal's authorization)."""
    now = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC)]
    gw = EmbeddedGateway(db_url=db_url, clock=lambda: now[0])
    gw.up()
    try:
        auth_id = "kiosk-0001-00000001-expiry"
        body = {
            "authorization_id": auth_id,
            "terminal_id": STATION,
            "amount": {"minor": 5000, "currency": "EUR"},
            "card": {"kind": "id_token", "token": TOKEN, "brand": "RFID", "last4": ""},
        }
        held = requests.post(
            gw.url + "/v1/authorizations", json=body, headers={"Idempotency-Key": "h-1"}, timeout=10
        )
        assert held.status_code == 200, held.text

        def ask(key: str) -> str:
            answer = requests.post(
                gw.url + "/v1/link-codes",
                json={"terminal_id": STATION, "authorization_id": auth_id},
                headers={"Idempotency-Key": key},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["expires_in_ms"] == 5 * 60_000
            return str(answer.json()["code"])

        codes = LinkCodes(gw.engine, lambda: now[0])
        late = ask("k-1")
        now[0] += timedelta(minutes=5)
        assert codes.use(late) is None
        in_time = ask("k-2")
        now[0] += timedelta(minutes=4, seconds=59)
        assert codes.use(in_time) is not None
    finally:
        gw.close()
