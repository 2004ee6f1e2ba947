"""Refunds by the operator: partial, several, never above what was captured, through the
processor that captured, recorded as ledger movements and shown on the receipt. On both
back-ends."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from gateway.server import EmbeddedGateway
from tests.gateway.test_idempotency import authorization, capture
from tests.ledger_check import assert_processor_agrees

AUTH = "auth-refund-0001"


def post(gw: EmbeddedGateway, path: str, key: str, body: Any, token: str | None = None) -> Any:
    headers = {"Idempotency-Key": key}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(gw.url + path, json=body, headers=headers, timeout=10)


def refund(gw: EmbeddedGateway, key: str, minor: int, aid: str = AUTH) -> Any:
    body = {"amount": {"minor": minor, "currency": "EUR"}, "reason": "charger fault"}
    return post(gw, f"/operator/authorizations/{aid}/refunds", key, body, gw.operator_token)


def moves(gw: EmbeddedGateway, aid: str = AUTH) -> list[tuple[str, int]]:
    return [
        (m["kind"], m["amount"]) for m in gw.ledger.all_movements() if m["authorization_id"] == aid
    ]


@pytest.fixture
def captured(gw: EmbeddedGateway) -> EmbeddedGateway:
    assert post(gw, "/v1/authorizations", "a", authorization(AUTH)).status_code == 200
    assert post(gw, f"/v1/authorizations/{AUTH}/capture", "c", capture(3000)).status_code == 200
    return gw


def test_partial_refunds_sum_to_the_capture_and_one_more_is_refused(
    captured: EmbeddedGateway,
) -> None:
    gw = captured
    first = refund(gw, "r1", 1000)
    assert first.status_code == 200, first.text
    assert first.json()["amount_refunded"] == {"minor": 1000, "currency": "EUR"}
    assert refund(gw, "r1", 1000).json() == first.json()  # the same key: replayed, once
    second = refund(gw, "r2", 2000)
    assert second.json()["amount_refunded"]["minor"] == 3000
    over = refund(gw, "r3", 1)
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "exceeds_capture"
    assert moves(gw) == [("hold", 5000), ("capture", 3000), ("refund", 1000), ("refund", 2000)]
    [payment] = gw.processor.payments()
    assert (payment["captured"], payment["refunded"]) == (3000, 3000)
    assert_processor_agrees(gw.ledger.all_authorizations(), gw.processor.payments())
    receipt_id = capture(3000)["receipt"]["receipt_id"]
    page = requests.get(f"{gw.url}/receipts/{receipt_id}", timeout=10).text
    assert '<dt class="label">Refunded</dt><dd class="value amount">30.00 EUR</dd>' in page


def test_only_the_operator_refunds_and_only_a_captured_payment(gw: EmbeddedGateway) -> None:
    assert post(gw, "/v1/authorizations", "a", authorization(AUTH)).status_code == 200
    body = {"amount": {"minor": 100, "currency": "EUR"}, "reason": "x"}
    anonymous = post(gw, f"/operator/authorizations/{AUTH}/refunds", "r", body)
    assert anonymous.status_code == 404
    held = refund(gw, "r-held", 100)
    assert held.status_code == 409
    assert held.json()["error"]["code"] == "not_refundable"
    assert moves(gw) == [("hold", 5000)]


def test_a_card_processor_refuses_a_refund_destination_and_nothing_moves(
    captured: EmbeddedGateway,
) -> None:
    gw = captured
    body = {
        "amount": {"minor": 500, "currency": "EUR"},
        "reason": "charger fault",
        "destination": "lnbc5u1pexample",  # a Lightning invoice: not where a card's money goes
    }
    answer = post(gw, f"/operator/authorizations/{AUTH}/refunds", "rd", body, gw.operator_token)
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "refund_refused")
    assert moves(gw) == [("hold", 5000), ("capture", 3000)]
    [payment] = gw.processor.payments()
    assert payment["refunded"] == 0
