"""Hostile input: every request below is answered with a 4xx that names the problem, before
any processor call, and changes nothing — neither the ledger nor the processor's books. On
both back-ends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from gateway.server import EmbeddedGateway
from tests.gateway.test_idempotency import authorization, capture

TIMEOUT_S = 10
AUTH = "auth-hostile-0001"


def snapshot(gw: EmbeddedGateway) -> tuple[Any, ...]:
    return (
        gw.ledger.all_authorizations(),
        gw.ledger.all_movements(),
        gw.processor.payments(),
    )


def post(gw: EmbeddedGateway, path: str, body: Any, key: str = "hostile-key-1", **kw: Any) -> Any:
    return requests.post(
        gw.url + path,
        json=body,
        headers={"Idempotency-Key": key, **kw.pop("headers", {})},
        timeout=TIMEOUT_S,
        **kw,
    )


def with_amount(**amount: Any) -> dict[str, Any]:
    body = authorization(AUTH)
    body["amount"] = {**body["amount"], **amount}
    return body


def with_card(**card: Any) -> dict[str, Any]:
    body = authorization(AUTH)
    body["card"] = {**body["card"], **card}
    return body


# (case id, body, expected status, expected error code, a word the message must name)
AUTHORIZATION_CASES = [
    ("minor-as-string", with_amount(minor="5000"), 400, "invalid_request", "minor"),
    ("minor-as-bool", with_amount(minor=True), 400, "invalid_request", "minor"),
    ("minor-as-float", with_amount(minor=50.0), 400, "invalid_request", "minor"),
    ("minor-negative", with_amount(minor=-1), 400, "invalid_request", "minor"),
    ("minor-2-to-the-63", with_amount(minor=2**63), 400, "invalid_request", "minor"),
    ("minor-zero", with_amount(minor=0), 400, "amount_invalid", "positive"),
    ("above-the-ceiling", with_amount(minor=100_001), 400, "amount_too_large", "ceiling"),
    ("unknown-currency", with_amount(currency="XYZ"), 400, "unknown_currency", "XYZ"),
    ("currency-without-minor-unit", with_amount(currency="XAU"), 400, "unknown_currency", "XAU"),
    ("currency-lowercase", with_amount(currency="eur"), 400, "invalid_request", "currency"),
    ("currency-as-number", with_amount(currency=978), 400, "invalid_request", "currency"),
    ("unknown-field", {**authorization(AUTH), "tip": 5}, 400, "invalid_request", "tip"),
    (
        "missing-amount",
        {k: v for k, v in authorization(AUTH).items() if k != "amount"},
        400,
        "invalid_request",
        "amount",
    ),
    (
        "id-too-short",
        {**authorization(AUTH), "authorization_id": "x"},
        400,
        "invalid_request",
        "authorization_id",
    ),
    (
        "id-with-slash",
        {**authorization(AUTH), "authorization_id": "../../etc/passwd"},
        400,
        "invalid_request",
        "authorization_id",
    ),
    ("card-kind-unknown", with_card(kind="crypto"), 400, "invalid_request", "kind"),
    ("last4-letters", with_card(last4="abcd"), 400, "invalid_request", "last4"),
    ("payload-not-strings", with_card(payload={"ksn": 1}), 400, "invalid_request", "payload"),
    ("body-is-a-list", [authorization(AUTH)], 400, "invalid_request", "body"),
    ("nul-in-brand", with_card(brand="Vi\x00sa"), 400, "invalid_request", "NUL"),
    ("nul-in-payload-value", with_card(payload={"ksn": "a\x00"}), 400, "invalid_request", "NUL"),
    ("nul-in-payload-key", with_card(payload={"k\x00": "a"}), 400, "invalid_request", "NUL"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [case[1:] for case in AUTHORIZATION_CASES],
    ids=[case[0] for case in AUTHORIZATION_CASES],
)
def test_a_hostile_authorization_is_refused_and_changes_nothing(
    gw: EmbeddedGateway, body: Any, status: int, code: str, names: str
) -> None:
    before = snapshot(gw)
    response = post(gw, "/v1/authorizations", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert names in error["message"]
    assert snapshot(gw) == before
    assert gw.processor.calls == 0


def test_a_body_above_the_limit_is_refused_unread(gw: EmbeddedGateway) -> None:
    body = authorization(AUTH)
    body["card"]["payload"] = {"blob": "A" * (2 * 1024 * 1024)}
    response = post(gw, "/v1/authorizations", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    # A chunked body (no Content-Length) is cut off as soon as it passes the limit.
    chunks = (b"x" * 65536 for _ in range(40))
    chunked = requests.post(
        gw.url + "/v1/events",
        data=chunks,
        headers={"Idempotency-Key": "chunked-1", "Content-Type": "application/json"},
        timeout=TIMEOUT_S,
    )
    assert chunked.status_code == 413
    assert snapshot(gw) == ([], [], [])


def test_requests_without_or_with_a_bad_idempotency_key_are_refused(gw: EmbeddedGateway) -> None:
    missing = requests.post(gw.url + "/v1/authorizations", json=authorization(AUTH), timeout=5)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    too_long = post(gw, "/v1/authorizations", authorization(AUTH), key="k" * 129)
    assert too_long.status_code == 400
    assert snapshot(gw) == ([], [], [])


@pytest.fixture
def held(gw: EmbeddedGateway) -> EmbeddedGateway:
    assert post(gw, "/v1/authorizations", authorization(AUTH), key="hold").status_code == 200
    return gw


def capture_with(**amount: Any) -> dict[str, Any]:
    body = capture(321)
    body["amount"] = {**body["amount"], **amount}
    return body


def capture_with_receipt(**receipt: Any) -> dict[str, Any]:
    body = capture(321)
    body["receipt"] = {**body["receipt"], **receipt}
    return body


def line_of(incl_vat: int) -> dict[str, Any]:
    return {**capture(321)["receipt"]["lines"][0], "incl_vat": incl_vat}


CAPTURE_CASES = [
    ("minor-as-string", capture_with(minor="321"), 400, "invalid_request", "minor"),
    ("minor-as-bool", capture_with(minor=True), 400, "invalid_request", "minor"),
    ("minor-2-to-the-63", capture_with(minor=2**63), 400, "invalid_request", "minor"),
    ("unknown-currency", capture_with(currency="ABC"), 400, "unknown_currency", "ABC"),
    ("another-currency", capture_with(currency="USD"), 409, "currency_mismatch", "currency"),
    ("above-the-hold", capture_with(minor=5001), 409, "exceeds_authorization", "exceeds"),
    ("receipt-total-float", {**capture(321), "energy_wh": 1.5}, 400, "invalid_request", "energy"),
    # A receipt that is not the receipt of this capture (the driver's receipt totals what
    # was taken from their card).
    ("receipt-total-not-the-capture", capture_with_receipt(total=412), 400, "receipt_mismatch",
     "receipt total 4.12 EUR differs from the capture 3.21 EUR"),
    ("receipt-in-another-currency", capture_with_receipt(currency="USD"), 400,
     "receipt_mismatch", "receipt currency USD"),
    ("receipt-vat-not-its-total", capture_with_receipt(total_excl_vat=300), 400,
     "receipt_mismatch", "excl. VAT plus its VAT"),
    ("receipt-lines-not-its-total", capture_with_receipt(lines=[line_of(300)]), 400,
     "receipt_mismatch", "lines incl. VAT"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [case[1:] for case in CAPTURE_CASES],
    ids=[case[0] for case in CAPTURE_CASES],
)
def test_a_hostile_capture_is_refused_and_changes_nothing(
    held: EmbeddedGateway, body: Any, status: int, code: str, names: str
) -> None:
    before = snapshot(held)
    calls = held.processor.calls
    response = post(held, f"/v1/authorizations/{AUTH}/capture", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert names in error["message"]
    assert snapshot(held) == before
    assert held.processor.calls == calls


def test_an_increment_past_the_gateways_ceiling_is_refused(held: EmbeddedGateway) -> None:
    before = snapshot(held)
    body = {
        "amount": {"minor": 99_000, "currency": "EUR"},
        "ceiling": {"minor": 10**9, "currency": "EUR"},
    }
    response = post(held, f"/v1/authorizations/{AUTH}/increment", body)
    assert response.status_code in (400, 409)
    assert response.json()["error"]["code"] in ("amount_too_large", "exceeds_ceiling")
    assert snapshot(held) == before


def test_steps_on_an_unknown_authorization_are_404_and_change_nothing(
    gw: EmbeddedGateway,
) -> None:
    response = post(gw, "/v1/authorizations/auth-nothing-0001/capture", capture(321))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_authorization"
    assert snapshot(gw) == ([], [], [])


def test_the_same_key_with_a_changed_body_is_refused(held: EmbeddedGateway) -> None:
    body = copy.deepcopy(authorization(AUTH))
    body["amount"]["minor"] = 4000
    before = snapshot(held)
    response = post(held, "/v1/authorizations", body, key="hold")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert snapshot(held) == before
