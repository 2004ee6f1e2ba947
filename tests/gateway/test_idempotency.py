"""The gateway's idempotency and money rules over real HTTP, on a real SQLite ledger.

The embedded gateway runs uvicorn on a loopback port in a thread, as the simulator and the
demo use it; these tests talk to it with `requests`, as the terminal's uplink does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from gateway.ledger.schema import idempotency
from gateway.processors import CardRef
from gateway.processors.port import ErrorCode, Outcome, Result
from gateway.processors.simulated import (
    DECLINE_LAST4,
    PARTIAL_LAST4,
    TIMEOUT_LAST4,
)
from gateway.server import EmbeddedGateway
from terminal.money import Money

TIMEOUT_S = 10


class Client:
    """POSTs with an Idempotency-Key, as the terminal does."""

    def __init__(self, gateway: EmbeddedGateway) -> None:
        self.gateway = gateway
        self.http = requests.Session()

    def post(self, path: str, key: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(
            self.gateway.url + path,
            json=body,
            headers={"Idempotency-Key": key},
            timeout=TIMEOUT_S,
        )

    def authorize(self, body: dict[str, Any], key: str | None = None) -> requests.Response:
        return self.post("/v1/authorizations", key or f"{body['authorization_id']}:authorize", body)

    def capture(self, auth_id: str, minor: int, key: str | None = None) -> requests.Response:
        return self.post(
            f"/v1/authorizations/{auth_id}/capture", key or f"{auth_id}:capture", capture(minor)
        )

    def void(self, auth_id: str, key: str | None = None, reason: str = "cancelled") -> Any:
        return self.post(
            f"/v1/authorizations/{auth_id}/void", key or f"{auth_id}:void", {"reason": reason}
        )

    def movements(self, auth_id: str) -> list[tuple[str, int]]:
        return [
            (m["kind"], m["amount"])
            for m in self.gateway.ledger.all_movements()
            if m["authorization_id"] == auth_id
        ]

    def close(self) -> None:
        self.http.close()


def authorization(auth_id: str, *, last4: str = "0010", minor: int = 5000) -> dict[str, Any]:
    return {
        "authorization_id": auth_id,
        "terminal_id": "KIOSK-0001",
        "amount": {"minor": minor, "currency": "EUR"},
        "card": {
            "kind": "payment",
            "token": "tok-0123456789abcdef",
            "brand": "Visa",
            "last4": last4,
            "expiry": "4912",
            "payload": {"ciphertext": "AAAA"},
        },
    }


def capture(minor: int) -> dict[str, Any]:
    return {
        "amount": {"minor": minor, "currency": "EUR"},
        "energy_wh": 8250,
        "receipt": {
            "receipt_id": "RCPT0001",
            "station": "Example Street 1",
            "tariff": "Standard AC",
            "card": "Visa **** 0010",
            "started_at": "2026-01-15T09:00:00+00:00",
            "ended_at": "2026-01-15T09:45:00+00:00",
            "energy_wh": 8250,
            "currency": "EUR",
            "lines": [
                {
                    "dimension": "ENERGY",
                    "quantity": "8.25",
                    "unit": "kWh",
                    "excl_vat": minor,
                    "vat_percent": "0",
                }
            ],
            "vat": [{"percent": "0", "base": minor, "vat": 0}],
            "total_excl_vat": minor,
            "total": minor,
        },
    }


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def _serve(gateway: EmbeddedGateway) -> Iterator[Client]:
    gateway.up()
    client = Client(gateway)
    try:
        yield client
    finally:
        client.close()
        gateway.close()


@pytest.fixture
def gw(db_url: str) -> Iterator[Client]:
    yield from _serve(EmbeddedGateway(db_url=db_url))


# -- authorizations -----------------------------------------------------------------------


def test_same_key_and_body_replays_the_first_answer_and_holds_once(gw: Client) -> None:
    body = authorization("auth-replay-0001")
    first = gw.authorize(body)
    again = gw.authorize(body)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json() == {
        "authorization_id": "auth-replay-0001",
        "status": "approved",
        "amount_authorized": {"minor": 5000, "currency": "EUR"},
    }
    assert gw.movements("auth-replay-0001") == [("hold", 5000)]
    assert len(gw.gateway.processor.payments()) == 1


def test_same_key_with_a_different_body_is_refused(gw: Client) -> None:
    key = "auth-reuse-0001:authorize"
    assert gw.authorize(authorization("auth-reuse-0001"), key).status_code == 200
    changed = gw.authorize(authorization("auth-reuse-0001", minor=4000), key)
    assert changed.status_code == 422
    assert error_code(changed) == "idempotency_key_reused"
    assert gw.movements("auth-reuse-0001") == [("hold", 5000)]


def test_same_key_on_another_endpoint_is_refused(gw: Client) -> None:
    key = "shared-key-0001"
    assert gw.authorize(authorization("auth-shared-0001"), key).status_code == 200
    response = gw.void("auth-shared-0001", key)
    assert response.status_code == 422
    assert error_code(response) == "idempotency_key_reused"
    assert gw.movements("auth-shared-0001") == [("hold", 5000)]


def test_a_new_key_for_a_used_authorization_id_is_refused(gw: Client) -> None:
    assert gw.authorize(authorization("auth-dup-0001")).status_code == 200
    response = gw.authorize(authorization("auth-dup-0001"), "another-key-0001")
    assert response.status_code == 409
    assert error_code(response) == "duplicate_authorization"
    assert gw.movements("auth-dup-0001") == [("hold", 5000)]


def test_void_before_its_authorization_leaves_a_tombstone_and_refuses_it(gw: Client) -> None:
    voided = gw.void("auth-late-0001", reason="no_answer")
    assert voided.status_code == 200
    assert voided.json() == {"authorization_id": "auth-late-0001", "status": "voided"}
    late = gw.authorize(authorization("auth-late-0001"))
    assert late.status_code == 409
    assert error_code(late) == "already_voided"
    assert gw.movements("auth-late-0001") == []
    assert gw.gateway.processor.payments() == []
    # The refusal is the stored answer for the key: a retry of the late request stays refused.
    assert gw.authorize(authorization("auth-late-0001")).json() == late.json()


# -- captures and voids -------------------------------------------------------------------


def test_capture_above_the_authorization_is_refused(gw: Client) -> None:
    assert gw.authorize(authorization("auth-over-0001")).status_code == 200
    response = gw.capture("auth-over-0001", 5001)
    assert response.status_code == 409
    assert error_code(response) == "exceeds_authorization"
    assert gw.movements("auth-over-0001") == [("hold", 5000)]


def _key_row(gw: Client, key: str) -> Any:
    with gw.gateway.engine.connect() as conn:
        return conn.execute(sa.select(idempotency).where(idempotency.c.key == key)).one()


def test_a_refusal_found_in_the_steps_claim_is_stored_under_its_key(gw: Client) -> None:
    # The key is claimed in the step's own transaction, which the refusal undoes: the
    # refusal is still stored under the key, and its retry gets it back.
    assert gw.authorize(authorization("auth-kref-0001")).status_code == 200
    refused = gw.capture("auth-kref-0001", 5001, key="kref-capture")
    row = _key_row(gw, "kref-capture")
    assert (row.state, row.status_code) == ("done", 409)
    again = gw.capture("auth-kref-0001", 5001, key="kref-capture")
    assert (again.status_code, again.json()) == (409, refused.json())
    assert error_code(refused) == "exceeds_authorization"


def test_a_money_step_leaves_its_key_answered_and_unlocked(gw: Client) -> None:
    assert gw.authorize(authorization("auth-klock-001"), key="klock-auth").status_code == 200
    assert gw.capture("auth-klock-001", 100, key="klock-capture").status_code == 200
    for key in ("klock-auth", "klock-capture"):
        row = _key_row(gw, key)
        assert (row.state, row.status_code, row.locked_at) == ("done", 200, None)


def test_capture_twice_with_the_same_key_captures_once(gw: Client) -> None:
    assert gw.authorize(authorization("auth-cap-0001")).status_code == 200
    first = gw.capture("auth-cap-0001", 321)
    again = gw.capture("auth-cap-0001", 321)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["amount_captured"] == {"minor": 321, "currency": "EUR"}
    assert gw.movements("auth-cap-0001") == [("hold", 5000), ("capture", 321)]
    (hold,) = gw.gateway.processor.payments()
    assert (hold["state"], hold["captured"]) == ("captured", 321)


def test_a_second_capture_of_another_amount_under_a_new_key_is_refused(gw: Client) -> None:
    assert gw.authorize(authorization("auth-cap2-0001")).status_code == 200
    assert gw.capture("auth-cap2-0001", 321).status_code == 200
    response = gw.capture("auth-cap2-0001", 100, key="auth-cap2-0001:capture-again")
    assert response.status_code == 409
    assert error_code(response) == "already_captured"
    assert gw.movements("auth-cap2-0001") == [("hold", 5000), ("capture", 321)]


def test_the_same_capture_under_a_new_key_gets_the_same_answer(gw: Client) -> None:
    """Idempotent by state: a capture retried after its key expired (or under another key)
    is answered as the first one was, and captures nothing more."""
    assert gw.authorize(authorization("auth-cap3-0001")).status_code == 200
    first = gw.capture("auth-cap3-0001", 321)
    again = gw.capture("auth-cap3-0001", 321, key="auth-cap3-0001:capture-after-expiry")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert gw.movements("auth-cap3-0001") == [("hold", 5000), ("capture", 321)]


def test_zero_capture_is_refused(gw: Client) -> None:
    assert gw.authorize(authorization("auth-zero-0001")).status_code == 200
    response = gw.capture("auth-zero-0001", 0)
    assert response.status_code == 400
    assert error_code(response) == "amount_invalid"
    assert gw.movements("auth-zero-0001") == [("hold", 5000)]


def test_void_after_capture_is_refused_and_moves_nothing(gw: Client) -> None:
    assert gw.authorize(authorization("auth-vac-0001")).status_code == 200
    assert gw.capture("auth-vac-0001", 500).status_code == 200
    response = gw.void("auth-vac-0001")
    assert response.status_code == 409
    assert error_code(response) == "not_voidable"
    assert gw.movements("auth-vac-0001") == [("hold", 5000), ("capture", 500)]


def test_void_releases_the_hold_once(gw: Client) -> None:
    assert gw.authorize(authorization("auth-void-0001")).status_code == 200
    first = gw.void("auth-void-0001")
    again = gw.void("auth-void-0001")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert gw.movements("auth-void-0001") == [("hold", 5000), ("release", 5000)]
    assert gw.capture("auth-void-0001", 100).status_code == 409


# -- the simulated processor's test cards ---------------------------------------------------


def test_decline_card_is_declined_and_holds_nothing(gw: Client) -> None:
    response = gw.authorize(authorization("auth-decl-0001", last4=DECLINE_LAST4))
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "declined"
    assert answer["decline_reason"] == "insufficient_funds"
    assert answer.get("amount_authorized") is None
    assert gw.movements("auth-decl-0001") == []
    # Nothing is held, so the terminal's void is answered without moving money.
    assert gw.void("auth-decl-0001").status_code == 200
    assert gw.movements("auth-decl-0001") == []
    assert error_code(gw.capture("auth-decl-0001", 100)) == "not_capturable"


def test_a_token_on_the_deny_list_is_declined_without_asking_the_processor(gw: Client) -> None:
    body = authorization("auth-deny-0001")
    gw.gateway.ledger.put_token(body["card"]["token"], "deny")
    calls = gw.gateway.processor.calls
    response = gw.authorize(body)
    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert response.json()["decline_reason"] == "denied"
    assert gw.gateway.processor.calls == calls
    assert gw.movements("auth-deny-0001") == []
    # Off the list, the same card is held again (a new session).
    gw.gateway.ledger.put_token(body["card"]["token"], None)
    assert gw.authorize(authorization("auth-deny-0002")).json()["status"] == "approved"
    assert gw.gateway.processor.calls == calls + 1


def test_the_simulated_processor_refuses_a_payment_id_used_before_and_replays_a_key(
    gw: Client,
) -> None:
    processor = gw.gateway.processor
    card = CardRef(
        kind="payment", token="tok-1", brand="Visa", last4="0010", expiry="4912", payload={}
    )
    amount = Money(5000, "EUR")
    first = processor.hold(key="k-1", payment_id="pay-1", card=card, amount=amount)
    assert first.outcome is Outcome.APPROVED
    assert processor.hold(key="k-1", payment_id="pay-1", card=card, amount=amount) == first
    for last4 in ("0010", DECLINE_LAST4):
        again = processor.hold(
            key=f"k-2-{last4}", payment_id="pay-1", card=replace(card, last4=last4), amount=amount
        )
        assert again.outcome is Outcome.DECLINED
        assert again.error is not None and again.error.code is ErrorCode.INVALID_REQUEST
    assert len([p for p in processor.payments() if p["payment_id"] == "pay-1"]) == 1
    # A capture the books cannot take says why and changes nothing.
    reference = first.reference
    refused = {
        "k-3": (reference, Money(100, "USD"), ErrorCode.AMOUNT_INVALID),
        "k-4": (reference, Money(5001, "EUR"), ErrorCode.AMOUNT_INVALID),
        "k-5": ("sim_unknown", Money(100, "EUR"), ErrorCode.NOT_FOUND),
    }
    for key, (ref, money, code) in refused.items():
        result = processor.capture(key=key, reference=ref, amount=money)
        assert result.error is not None and result.error.code is code, key
    assert processor.capture(key="k-6", reference=reference, amount=amount).succeeded
    late = processor.capture(key="k-7", reference=reference, amount=amount)
    assert late.error is not None and late.error.code is ErrorCode.ALREADY_SETTLED
    (payment,) = [p for p in processor.payments() if p["payment_id"] == "pay-1"]
    assert (payment["state"], payment["captured"]) == ("captured", 5000)


def test_the_simulated_processor_answers_a_repeated_key_as_first_and_changes_nothing(
    gw: Client,
) -> None:
    # Each call repeated with its key after later calls moved the payment on: the first
    # answer, and the books as they were (a capture or release is not looked up first: its
    # repetition is refused by the payment's state and answered from the key).
    processor = gw.gateway.processor
    card = CardRef(
        kind="payment", token="tok-1", brand="Visa", last4="0010", expiry="4912", payload={}
    )
    calls: list[tuple[Callable[[], Result], Result]] = []

    def call(do: Callable[[], Result]) -> Result:
        result = do()
        assert result.succeeded, result
        calls.append((do, result))
        return result

    def books() -> list[dict[str, object]]:
        return sorted(processor.payments(), key=lambda p: str(p["reference"]))

    ref = call(
        lambda: processor.hold(key="r-1", payment_id="pay-r1", card=card, amount=Money(5000, "EUR"))
    ).reference
    call(lambda: processor.increment(key="r-2", reference=ref, amount=Money(7000, "EUR")))
    call(lambda: processor.increment(key="r-3", reference=ref, amount=Money(9000, "EUR")))
    call(lambda: processor.capture(key="r-4", reference=ref, amount=Money(6000, "EUR")))
    call(lambda: processor.refund(key="r-5", reference=ref, amount=Money(100, "EUR")))
    other = call(
        lambda: processor.hold(key="r-6", payment_id="pay-r2", card=card, amount=Money(2000, "EUR"))
    ).reference
    call(lambda: processor.release(key="r-7", reference=other, amount=Money(2000, "EUR")))
    before = books()
    for do, first in calls:
        assert do() == first
    assert books() == before
    paid = {p["payment_id"]: p for p in before}
    assert (paid["pay-r1"]["held"], paid["pay-r1"]["captured"]) == (9000, 6000)
    assert (paid["pay-r1"]["refunded"], paid["pay-r2"]["state"]) == (100, "released")


def test_partial_card_approves_half_and_caps_the_capture(gw: Client) -> None:
    response = gw.authorize(authorization("auth-part-0001", last4=PARTIAL_LAST4))
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["amount_authorized"] == {"minor": 2500, "currency": "EUR"}
    assert gw.movements("auth-part-0001") == [("hold", 2500)]
    over = gw.capture("auth-part-0001", 2501)
    assert over.status_code == 409
    assert error_code(over) == "exceeds_authorization"
    assert gw.capture("auth-part-0001", 2500, key="auth-part-0001:capture-2").status_code == 200
    assert gw.movements("auth-part-0001") == [("hold", 2500), ("capture", 2500)]


def test_timeout_card_answers_504_and_holds_nothing(gw: Client) -> None:
    body = authorization("auth-slow-0001", last4=TIMEOUT_LAST4)
    for _ in range(2):
        response = gw.authorize(body)
        assert response.status_code == 504
        assert error_code(response) == "processor_timeout"
    assert gw.movements("auth-slow-0001") == []
    row = gw.gateway.ledger.fetch("auth-slow-0001")
    assert row is not None
    # The hold's outcome is unknown: recorded as such, for a retry or the reconciler.
    assert (row.status, row.op, row.op_state) == ("pending", "hold", "unknown")
    assert gw.gateway.processor.payments() == []


def test_retry_after_a_timeout_asks_the_processor_and_then_holds_once(gw: Client) -> None:
    processor = gw.gateway.processor
    body = authorization("auth-retry-0001")
    processor.fail = "unreachable"
    assert gw.authorize(body).status_code == 504
    processor.fail = None
    retried = gw.authorize(body)
    assert retried.status_code == 200
    assert retried.json()["status"] == "approved"
    assert gw.movements("auth-retry-0001") == [("hold", 5000)]
    calls = processor.calls
    # From now on the answer is stored: a third try replays it without the processor.
    assert gw.authorize(body).json() == retried.json()
    assert processor.calls == calls
    assert len(processor.payments()) == 1


def test_an_answer_lost_after_the_hold_is_found_by_asking_not_by_holding_again(
    gw: Client,
) -> None:
    processor = gw.gateway.processor
    body = authorization("auth-lost-0001")
    processor.fail = "lost"  # the processor holds, its answer never arrives
    assert gw.authorize(body).status_code == 504
    processor.fail = None
    calls = processor.calls
    retried = gw.authorize(body)
    assert retried.json()["status"] == "approved"
    assert processor.calls == calls  # the status told it: no second hold call
    assert len(processor.payments()) == 1
    assert gw.movements("auth-lost-0001") == [("hold", 5000)]


def test_a_receipt_id_already_taken_is_refused_not_a_server_error(db_url: str) -> None:
    gateway = EmbeddedGateway(db_url=db_url)
    gateway.up()
    try:
        http = requests.Session()
        for sid in ("receipt-session-a", "receipt-session-b"):
            body = {
                "authorization_id": sid,
                "terminal_id": "KIOSK-0001",
                "amount": {"minor": 5000, "currency": "EUR"},
                "card": {
                    "kind": "payment",
                    "token": "ct_receipt0001",
                    "brand": "Visa",
                    "last4": "0010",
                },
            }
            r = http.post(
                f"{gateway.url}/v1/authorizations",
                json=body,
                headers={"Idempotency-Key": f"{sid}:authorize"},
                timeout=5,
            )
            assert r.json()["status"] == "approved"
        receipt = {
            "receipt_id": "SAMERECEIPT1",
            "station": "S",
            "tariff": "T",
            "card": "Visa **** 0010",
            "started_at": "2026-01-01T00:00:00+00:00",
            "ended_at": "2026-01-01T01:00:00+00:00",
            "energy_wh": 1000,
            "currency": "EUR",
            "lines": [],
            "vat": [],
            "total_excl_vat": 100,
            "total": 100,
        }
        answers = [
            http.post(
                f"{gateway.url}/v1/authorizations/{sid}/capture",
                json={
                    "amount": {"minor": 100, "currency": "EUR"},
                    "energy_wh": 1000,
                    "receipt": receipt,
                },
                headers={"Idempotency-Key": f"{sid}:capture"},
                timeout=5,
            )
            for sid in ("receipt-session-a", "receipt-session-b")
        ]
        assert answers[0].status_code == 200
        assert answers[1].status_code == 409
        assert answers[1].json()["error"]["code"] == "receipt_id_taken"
    finally:
        gateway.close()


def test_an_event_batch_retried_with_more_events_stores_none_twice(db_url: str) -> None:
    gateway = EmbeddedGateway(db_url=db_url)
    gateway.up()
    try:
        http = requests.Session()

        def event(n: int) -> dict[str, str]:
            return {
                "key": f"KIOSK-0001:event:{n:08d}",
                "kind": "fault",
                "detail": f"n={n}",
                "at": "2026-01-01T00:00:00+00:00",
            }

        for first, count in ((1, 2), (1, 3)):  # the retry carries one more event
            r = http.post(
                f"{gateway.url}/v1/events",
                json={
                    "terminal_id": "KIOSK-0001",
                    "events": [event(first + i) for i in range(count)],
                },
                headers={"Idempotency-Key": f"KIOSK-0001:event:{first:08d}+{count}"},
                timeout=5,
            )
            assert r.status_code == 200
        with gateway.engine.connect() as conn:
            from gateway.ledger import events

            stored = [row.key for row in conn.execute(events.select())]
        assert sorted(stored) == [event(n)["key"] for n in (1, 2, 3)]
    finally:
        gateway.close()
