"""A session settled end to end by each web adapter through the gateway, against its peer: the
hold placed by the phone's entry point (`Payments.hold_web`), the capture of the priced amount
with its receipt through the terminal API as the charging point sends it, the receipt page,
the operator's refunds, and the ledger checked against the peer's own books where the peer
keeps them (localstripe's PaymentIntent, LNbits's invoice; Prism keeps none, so Adyen's side
is its notifications)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.processors import CardRef
from gateway.processors.lightning_change import sats_for
from gateway.processors.methods import LIGHTNING
from gateway.processors.port import PaymentState
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.ledger_check import assert_processor_agrees
from tests.processors.conftest import BTC_EUR, Lnbits, lightning_processors
from tests.processors.peers import RecordingProxy
from tests.processors.stack import STRIPE_APPROVE, stripe_payment_method
from tests.processors.test_adyen import ACCOUNT, _card, _notification

TERMINAL = "KIOSK-0001"
ADYEN_PSP = "993617895215577D"  # the pspReference of Prism's example "card-securedfields"


def _post(gw: EmbeddedGateway, path: str, body: Any, key: str, token: bool = False) -> Any:
    headers = {"Idempotency-Key": key}
    if token:
        headers["Authorization"] = f"Bearer {gw.operator_token}"
    return requests.post(gw.url + path, json=body, headers=headers, timeout=30)


def _refund(
    gw: EmbeddedGateway, aid: str, minor: int, key: str, destination: str | None = None
) -> Any:
    body: dict[str, Any] = {"amount": {"minor": minor, "currency": "EUR"}, "reason": "goodwill"}
    if destination is not None:
        body["destination"] = destination
    return _post(gw, f"/operator/authorizations/{aid}/refunds", body, key, token=True)


def _row(gw: EmbeddedGateway, aid: str) -> dict[str, Any]:
    return next(r for r in gw.ledger.all_authorizations() if r["id"] == aid)


def _receipt_page(gw: EmbeddedGateway) -> str:
    receipt_id = capture(0)["receipt"]["receipt_id"]
    page = requests.get(f"{gw.url}/receipts/{receipt_id}", timeout=10)
    assert page.status_code == 200
    return page.text


@pytest.mark.slow
def test_a_card_session_settles_through_stripe(
    stripe_gw: EmbeddedGateway, localstripe: str
) -> None:
    gw, aid = stripe_gw, "stripe-whole-session"
    card = stripe_payment_method(localstripe, STRIPE_APPROVE)
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    captured = _post(gw, f"/v1/authorizations/{aid}/capture", capture(4200), "c1")
    assert captured.status_code == 200, captured.text
    assert "42.00" in _receipt_page(gw)
    assert _refund(gw, aid, 1200, "r1").status_code == 200
    assert _refund(gw, aid, 3000, "r2").status_code == 200
    over = _refund(gw, aid, 1, "r3")
    assert (over.status_code, over.json()["error"]["code"]) == (409, "exceeds_capture")
    refunded = '<dt class="label">Refunded</dt><dd class="value amount">42.00 EUR</dd>'
    assert refunded in _receipt_page(gw)

    row = _row(gw, aid)
    assert (row["processor"], row["card_kind"]) == ("stripe", "web_card")
    at_stripe = gw.processors.get("stripe", "acct_web").status(
        payment_id=aid, reference=row["processor_ref"]
    )
    assert at_stripe.state is PaymentState.CAPTURED
    payment = {
        "payment_id": aid,
        "reference": at_stripe.reference,
        "state": "captured",
        "captured": at_stripe.captured.minor if at_stripe.captured else None,
        "refunded": at_stripe.refunded.minor if at_stripe.refunded else None,
    }
    assert_processor_agrees([row], [payment])


@pytest.mark.slow
def test_a_card_session_settles_through_adyen_and_its_notifications(
    adyen_gw: EmbeddedGateway, prism_proxy: RecordingProxy
) -> None:
    gw, aid = adyen_gw, "adyen-whole-session"
    prism_proxy.prefer = "example=card-securedfields"
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=_card(), amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    prism_proxy.prefer = None
    assert _post(gw, f"/v1/authorizations/{aid}/capture", capture(4200), "c1").status_code == 504

    def notify(code: str, psp: str, minor: int) -> None:
        notice = _notification(
            code=code,
            pspReference=psp,
            originalReference=ADYEN_PSP,
            merchantReference=aid,
            amount={"currency": "EUR", "value": minor},
        )
        answer = requests.post(f"{gw.url}/webhooks/adyen/{ACCOUNT}", json=notice, timeout=30)
        assert answer.text == "[accepted]"

    notify("CAPTURE", "CAPT0000000042", 4200)
    retried = _post(gw, f"/v1/authorizations/{aid}/capture", capture(4200), "c1")
    assert retried.status_code == 200 and retried.json()["status"] == "captured"
    assert "42.00" in _receipt_page(gw)
    assert _refund(gw, aid, 1200, "r1").status_code == 504  # Adyen: received
    notify("REFUND", "REFD0000000001", 1200)
    again = _refund(gw, aid, 1200, "r1")
    assert again.status_code == 200, again.text
    assert again.json()["amount_refunded"]["minor"] == 1200
    assert _refund(gw, aid, 3001, "r2").json()["error"]["code"] == "exceeds_capture"
    # Every request the adapter sent was one Adyen's own document describes.
    for exchange in prism_proxy.exchanges:
        assert "sl-violations" not in {k.lower() for k in exchange.answer_headers}
    assert [ex.path for ex in prism_proxy.exchanges] == [
        "/payments",
        f"/payments/{ADYEN_PSP}/captures",
        f"/payments/{ADYEN_PSP}/refunds",
    ]
    row = _row(gw, aid)
    assert (row["status"], row["amount_captured"], row["amount_refunded"]) == (
        "captured",
        4200,
        1200,
    )


@pytest.mark.slow
def test_a_lightning_session_settles_against_lnbits(tmp_path: Path, lnbits: Lnbits) -> None:
    driver = lnbits.wallet("session-driver", sats=1_000_000)
    file = lightning_processors(tmp_path, lnbits, "session-operator")
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", processors_file=file)
    gw.up()
    try:
        wallet = CardRef(
            kind=LIGHTNING, token="", brand="lightning", last4="", expiry=None, payload={}
        )
        aid = "ln-whole-session"
        asked = {"authorization_id": aid, "terminal_id": TERMINAL, "card": wallet}
        pending = gw.payments.hold_web(**asked, amount=Money(2000, "EUR"))
        lnbits.pay(driver, pending.pay["bolt11"])
        assert (
            gw.payments.hold_web(**asked, amount=Money(2000, "EUR")).answer.body["status"]
            == "approved"
        )
        captured = _post(gw, f"/v1/authorizations/{aid}/capture", capture(1370), "c1")
        assert captured.status_code == 200, captured.text
        assert "13.70" in _receipt_page(gw)
        # A refund is paid to an invoice from the driver's wallet: without one, refused.
        refused = _refund(gw, aid, 100, "r0")
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "refund_refused")
        # Partial refunds to the driver's invoices sum to the capture; one more is refused.
        invoices = {
            key: lnbits.invoice(driver, sats_for(Money(minor, "EUR"), BTC_EUR))
            for key, minor in (("r1", 1000), ("r2", 370), ("r3", 1))
        }
        for key, minor in (("r1", 1000), ("r2", 370), ("r1", 1000)):  # r1 retried: once
            refunded = _refund(gw, aid, minor, key, destination=invoices[key])
            assert refunded.status_code == 200, refunded.text
        one_more = _refund(gw, aid, 1, "r3", destination=invoices["r3"])
        assert (one_more.status_code, one_more.json()["error"]["code"]) == (
            409,
            "exceeds_capture",
        )
        row = _row(gw, aid)
        at_lnbits = gw.processors.get("lightning", "op-wallet").status(
            payment_id=aid, reference=row["processor_ref"]
        )
        # LNbits's books: the invoice paid in full for the hold, the capture recorded on it
        # with the rest owed back to the driver, as in the ledger.
        assert at_lnbits.state is PaymentState.CAPTURED and at_lnbits.held == Money(2000, "EUR")
        assert at_lnbits.captured == Money(1370, "EUR")
        assert at_lnbits.refunded == Money(1370, "EUR")  # the two payouts LNbits made
        assert at_lnbits.raw["extra"]["owed_back_minor"] == 630
        assert (row["status"], row["amount_authorized"], row["amount_captured"]) == (
            "captured",
            2000,
            1370,
        )
        assert row["amount_refunded"] == 1370
        refunds = [m["amount"] for m in gw.ledger.all_movements() if m["kind"] == "refund"]
        assert refunds == [1000, 370]
    finally:
        gw.close()
