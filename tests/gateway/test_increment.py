"""POST /v1/authorizations/{id}/increment over real HTTP: incremental authorization raises an
approved hold, idempotently, never past the terminal's ceiling, never on a settled hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gateway.server import EmbeddedGateway
from tests.gateway.test_idempotency import Client, _serve, authorization, error_code

AUTH = "auth-incr-0001"


@pytest.fixture
def gw(db_url: str) -> Iterator[Client]:
    yield from _serve(EmbeddedGateway(db_url=db_url))


def increment(minor: int, ceiling: int = 15_000, currency: str = "EUR") -> dict[str, Any]:
    return {
        "amount": {"minor": minor, "currency": currency},
        "ceiling": {"minor": ceiling, "currency": currency},
    }


def top_up(gw: Client, number: int, body: dict[str, Any], auth: str = AUTH) -> requests.Response:
    return gw.post(f"/v1/authorizations/{auth}/increment", f"{auth}:increment:{number}", body)


def approved(gw: Client, auth: str = AUTH, last4: str = "0010") -> None:
    answer = gw.authorize(authorization(auth, last4=last4))
    assert answer.json()["status"] == "approved"


def test_increment_raises_the_hold_and_the_ledger_records_the_extra(gw: Client) -> None:
    approved(gw)
    answer = top_up(gw, 1, increment(2000))
    assert answer.status_code == 200
    assert answer.json() == {
        "authorization_id": AUTH,
        "status": "approved",
        "amount_authorized": {"minor": 7000, "currency": "EUR"},
    }
    assert top_up(gw, 2, increment(2000)).json()["amount_authorized"]["minor"] == 9000
    assert gw.movements(AUTH) == [("hold", 5000), ("increment", 2000), ("increment", 2000)]
    [hold] = gw.gateway.processor.payments()
    assert hold["held"] == 9000
    # The capture may now take up to the whole hold, increments included.
    assert gw.capture(AUTH, 9000).status_code == 200
    assert gw.movements(AUTH)[-1] == ("capture", 9000)


def test_a_repeated_increment_is_answered_from_the_key_and_raises_the_hold_once(
    gw: Client,
) -> None:
    approved(gw)
    first = top_up(gw, 1, increment(2000))
    again = top_up(gw, 1, increment(2000))
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    assert gw.movements(AUTH) == [("hold", 5000), ("increment", 2000)]
    assert error_code(top_up(gw, 1, increment(1000))) == "idempotency_key_reused"


def test_increment_past_the_ceiling_is_refused(gw: Client) -> None:
    approved(gw)
    assert top_up(gw, 1, increment(2000, ceiling=7000)).status_code == 200
    refused = top_up(gw, 2, increment(2000, ceiling=7000))
    assert refused.status_code == 409
    assert error_code(refused) == "exceeds_ceiling"
    assert gw.movements(AUTH) == [("hold", 5000), ("increment", 2000)]


@pytest.mark.parametrize("settle", ["capture", "void"])
def test_a_captured_or_voided_authorization_is_not_incremented(gw: Client, settle: str) -> None:
    approved(gw)
    assert (gw.capture(AUTH, 1000) if settle == "capture" else gw.void(AUTH)).status_code == 200
    refused = top_up(gw, 1, increment(2000))
    assert refused.status_code == 409
    assert error_code(refused) == "not_incrementable"


def test_increment_of_an_unknown_or_declined_authorization_is_refused(gw: Client) -> None:
    assert error_code(top_up(gw, 1, increment(2000), auth="auth-none-0001")) == (
        "unknown_authorization"
    )
    gw.authorize(authorization("auth-decl-0001", last4="0002"))
    assert error_code(top_up(gw, 1, increment(2000), auth="auth-decl-0001")) == (
        "not_incrementable"
    )


def test_zero_or_foreign_currency_increment_is_refused(gw: Client) -> None:
    approved(gw)
    assert error_code(top_up(gw, 1, increment(0))) == "amount_invalid"
    assert error_code(top_up(gw, 2, increment(100, currency="USD"))) == "currency_mismatch"
    assert gw.movements(AUTH) == [("hold", 5000)]


def test_without_processor_support_the_increment_is_refused(gw: Client) -> None:
    approved(gw)
    gw.gateway.processor.supports_increment = False
    refused = top_up(gw, 1, increment(2000))
    assert refused.status_code == 409
    assert error_code(refused) == "increment_unsupported"
    assert gw.movements(AUTH) == [("hold", 5000)]
