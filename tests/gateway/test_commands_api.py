"""The command channel's routes on the live gateway, both back-ends: the long poll hands a
terminal its own commands (at once, or when one is written while it waits), the answers are
idempotent, a "not started" releases the hold, and an answer and the expiry racing on one
command end one way. The answers conform to the committed contract."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from jsonschema import Draft202012Validator

from gateway.ledger.schema import sim_payments
from gateway.payments.answers import Refusal
from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD
from gateway.server import EmbeddedGateway
from terminal.money import Money

CONTRACT = Path(__file__).resolve().parents[2] / "contract" / "openapi.json"
TERMINAL = "kiosk-0001"


def paid(gw: EmbeddedGateway, aid: str, terminal: str = TERMINAL) -> str:
    card = CardRef(
        kind=WEB_CARD, token=f"web:{aid}", brand="Visa", last4="4242", expiry=None, payload={}
    )
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=terminal, card=card, amount=Money(2000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    command = gw.commands.start(
        aid, expires_at=gw.ledger.clock() + timedelta(minutes=5), brand="Visa", last4="4242"
    )
    assert command is not None
    return command


def poll(gw: EmbeddedGateway, terminal: str = TERMINAL, wait: int = 0) -> requests.Response:
    return requests.get(
        f"{gw.url}/v1/commands", params={"terminal_id": terminal, "wait": wait}, timeout=40
    )


def answer(
    gw: EmbeddedGateway, command_id: str, body: dict[str, Any], key: str = ""
) -> requests.Response:
    return requests.post(
        f"{gw.url}/v1/commands/{command_id}/answer",
        json=body,
        headers={"Idempotency-Key": key or f"{command_id}:answer"},
        timeout=10,
    )


def conforms(response: requests.Response, path: str, method: str) -> None:
    document = json.loads(CONTRACT.read_text(encoding="utf-8"))
    operation = document["paths"][path][method]
    schema = operation["responses"][str(response.status_code)]["content"]["application/json"]
    resolved = {**schema["schema"], "components": document["components"]}
    Draft202012Validator(resolved).validate(response.json())


def held(gw: EmbeddedGateway, aid: str) -> str:
    with gw.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(sim_payments.c.state).where(sim_payments.c.payment_id == aid)
            ).scalar_one()
        )


def test_a_terminal_gets_its_own_commands_and_no_other_terminals(gw: EmbeddedGateway) -> None:
    start = paid(gw, "web-api-0001")
    paid(gw, "web-api-0002", terminal="kiosk-0002")
    got = poll(gw)
    assert got.status_code == 200
    conforms(got, "/v1/commands", "get")
    [item] = got.json()["commands"]
    assert item["command_id"] == start and item["kind"] == "start"
    assert item["session_id"] == "web-api-0001"
    assert item["cost_limit"] == {"minor": 2000, "currency": "EUR"}
    assert 0 < item["expires_in_ms"] <= 5 * 60_000
    # Handed out: not again until the redelivery time has passed without an answer.
    assert poll(gw).json()["commands"] == []


def test_a_command_written_while_the_terminal_waits_is_handed_to_the_open_poll(
    gw: EmbeddedGateway,
) -> None:
    got: list[requests.Response] = []
    waiting = threading.Thread(target=lambda: got.append(poll(gw, wait=20)))
    waiting.start()
    threading.Event().wait(0.3)  # the poll is open before the command exists
    start = paid(gw, "web-api-0003")
    waiting.join(timeout=30)
    [response] = got
    assert [c["command_id"] for c in response.json()["commands"]] == [start]


@pytest.mark.parametrize(
    "params",
    [{"terminal_id": TERMINAL, "wait": 31}, {"terminal_id": TERMINAL, "wait": -1}, {"wait": 0}],
)
def test_a_poll_outside_the_contract_is_refused(
    gw: EmbeddedGateway, params: dict[str, Any]
) -> None:
    got = requests.get(f"{gw.url}/v1/commands", params=params, timeout=10)
    assert got.status_code == 400
    assert got.json()["error"]["code"] == "invalid_request"


def test_started_is_answered_once_and_replayed(gw: EmbeddedGateway) -> None:
    start = paid(gw, "web-api-0004")
    body = {"session_id": "web-api-0004", "status": "started", "reason": ""}
    first = answer(gw, start, body)
    assert first.status_code == 200
    conforms(first, "/v1/commands/{command_id}/answer", "post")
    assert first.json() == {
        "command_id": start,
        "authorization_id": "web-api-0004",
        "status": "answered",
    }
    assert answer(gw, start, body).json() == first.json()
    # Another answer to a started command is refused; the hold stays for the session.
    other = answer(gw, start, {**body, "status": "not_started"}, key="another-key-0001")
    assert (other.status_code, other.json()["error"]["code"]) == (409, "command_started")
    assert held(gw, "web-api-0004") == "held"
    assert gw.commands.state_of("web-api-0004") == "started"


def test_not_started_releases_the_hold(gw: EmbeddedGateway) -> None:
    start = paid(gw, "web-api-0005")
    body = {"session_id": "web-api-0005", "status": "not_started", "reason": "busy"}
    assert answer(gw, start, body).status_code == 200
    row = gw.ledger.fetch("web-api-0005")
    assert row is not None and row.status == "voided"
    assert held(gw, "web-api-0005") == "released"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"session_id": "web-api-9999", "status": "started"}, 400, "session_mismatch"),
        ({"session_id": "web-api-0006", "status": "received"}, 400, "invalid_status"),
        ({"session_id": "web-api-0006", "status": "maybe"}, 400, "invalid_request"),
    ],
)
def test_a_wrong_answer_is_refused_and_changes_nothing(
    gw: EmbeddedGateway, body: dict[str, Any], status: int, code: str
) -> None:
    start = paid(gw, "web-api-0006")
    got = answer(gw, start, body)
    assert (got.status_code, got.json()["error"]["code"]) == (status, code)
    assert gw.commands.state_of("web-api-0006") == "pending"
    assert held(gw, "web-api-0006") == "held"


def test_an_answer_to_an_unknown_command_is_404(gw: EmbeddedGateway) -> None:
    got = answer(gw, "no-such-command", {"session_id": "web-api-0007", "status": "started"})
    assert (got.status_code, got.json()["error"]["code"]) == (404, "unknown_command")


def test_started_after_the_expiry_gave_the_command_up_is_refused(
    gw: EmbeddedGateway,
) -> None:
    start = paid(gw, "web-api-0008")
    late = gw.ledger.clock() + timedelta(minutes=5) + gw.commands.grace
    gw.ledger.clock = lambda: late + timedelta(seconds=1)
    assert gw.commands.expire() == 1
    assert held(gw, "web-api-0008") == "released"
    got = answer(gw, start, {"session_id": "web-api-0008", "status": "started"})
    assert (got.status_code, got.json()["error"]["code"]) == (409, "command_expired")


def test_a_web_hold_no_kiosk_was_asked_to_start_is_released_in_the_end(
    gw: EmbeddedGateway,
) -> None:
    """The processor's answer was lost while the driver paid: the hold exists, but no start
    command was written. Once no code could still be paid for it, the hold is released."""
    card = CardRef(
        kind=WEB_CARD, token="web:x", brand="Visa", last4="4242", expiry=None, payload={}
    )
    held_web = gw.payments.hold_web(
        authorization_id="web-api-0009", terminal_id=TERMINAL, card=card, amount=Money(2000, "EUR")
    )
    assert held_web.answer.body["status"] == "approved"
    assert gw.commands.expire() == 0
    assert held(gw, "web-api-0009") == "held"
    late = gw.ledger.clock() + timedelta(minutes=26)
    gw.ledger.clock = lambda: late
    assert gw.commands.expire() == 1
    assert held(gw, "web-api-0009") == "released"
    assert gw.commands.expire() == 0


@pytest.mark.parametrize("kind", ["web", WEB_CARD, "lightning", "cash"])
def test_a_terminal_hold_refuses_a_kind_outside_the_kiosks_methods_and_writes_nothing(
    gw: EmbeddedGateway, kind: str
) -> None:
    """`place_hold` is the terminal's own hold (`payment`, `id_token`); a way to pay from the
    phone's page goes through `hold_web`, and a word outside the vocabulary is refused."""
    card = CardRef(kind=kind, token="t", brand="Visa", last4="4242", expiry=None, payload={})
    with pytest.raises(Refusal) as refused:
        gw.payments.place_hold(
            "web-api-0010", TERMINAL, Money(2000, "EUR"), card, lambda _c, _a: None
        )
    assert (refused.value.status, refused.value.code) == (400, "invalid_method")
    assert gw.ledger.fetch("web-api-0010") is None
