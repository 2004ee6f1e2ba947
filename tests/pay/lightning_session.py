"""A session paid up front with Lightning, for the tests of its change and its refunds (the
operator's wallet as the gateway's processor is `tests.processors.conftest.lightning_processors`,
reached directly or through a `RecordingProxy` that holds back the payouts, `is_payout`): a
payment made from a payer's own wallet, then captured or voided through the terminal API as a
kiosk would."""

from __future__ import annotations

import requests

from gateway.processors import CardRef
from gateway.processors.methods import LIGHTNING
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.processors.stack import Lnbits


def is_payout(method: str, path: str, body: bytes) -> bool:
    """The gateway paying out: LNbits's outgoing payment."""
    return method == "POST" and path == "/api/v1/payments" and b'"out": true' in body


def prepaid(gateway: EmbeddedGateway, peer: Lnbits, aid: str, *, hold: int, captured: int) -> None:
    """A session paid up front with Lightning for `hold` (minor EUR) on `gateway`, then
    captured for `captured` through the terminal API, or voided when it is 0."""
    payer = peer.wallet(f"payer-{aid}", sats=1_000_000)
    wallet = CardRef(kind=LIGHTNING, token="", brand="", last4="", expiry=None, payload={})
    asked = {"authorization_id": aid, "terminal_id": "KIOSK-0001", "card": wallet}
    pending = gateway.payments.hold_web(**asked, amount=Money(hold, "EUR"))
    peer.pay(payer, pending.pay["bolt11"])
    again = gateway.payments.hold_web(**asked, amount=Money(hold, "EUR"))
    assert again.answer.body["status"] == "approved", again.answer.body
    if captured:
        path, body = "capture", capture(captured)
    else:
        path, body = "void", {"reason": "not_started"}
    done = requests.post(
        f"{gateway.url}/v1/authorizations/{aid}/{path}",
        json=body,
        headers={"Idempotency-Key": f"{aid}-{path}"},
        timeout=30,
    )
    assert done.status_code == 200, done.text
