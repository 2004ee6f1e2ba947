"""A processor outage with each adapter and its peer: the processor acts on a capture but its
answer is lost, the step is `unknown` (the kiosk hears "no answer" and retries), and it is
resolved by asking the processor (`status`) — by the reconciler, and for Stripe also by the
webhook endpoint when a notification fails verification (not believed, but a reason to ask) —
or, for Adyen, which publishes no status, by the processor's own notification. Stripe runs on
localstripe, Lightning on LNbits (the capture recorded on the invoice, its answer lost), Adyen
on Prism; the simulated processor's outage is `tests/gateway/test_reconciler.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.processors import CardRef
from gateway.processors.methods import LIGHTNING
from gateway.processors.port import PaymentState
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.processors.conftest import Lnbits, lightning_processors, processors_file
from tests.processors.peers import RecordingProxy
from tests.processors.stack import STRIPE_APPROVE, stripe_payment_method
from tests.processors.test_adyen import ACCOUNT, _card, _notification

TERMINAL = "KIOSK-0001"


@pytest.fixture
def stripe_proxy(localstripe: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(localstripe).start()
    yield proxy
    proxy.close()


@pytest.fixture
def gw(tmp_path: Path, env: None, stripe_proxy: RecordingProxy) -> Iterator[EmbeddedGateway]:
    tables = f"""
[[processors]]
adapter = "stripe"
account = "acct_outage"
api_key_env = "T_STRIPE_KEY"
webhook_secret_env = "T_STRIPE_WHSEC"
api_base = "{stripe_proxy.url}"
timeout_s = 5
"""
    routes = '[[routes]]\nprocessor = "stripe"\naccount = "acct_outage"\nmethod = "web_card"\n'
    config = processors_file(tmp_path, tables, routes)
    gateway = EmbeddedGateway(tmp_path / "g.sqlite3", processors_file=config)
    gateway.up()
    yield gateway
    gateway.close()


def _capture(gw: EmbeddedGateway, aid: str, minor: int) -> Any:
    return requests.post(
        f"{gw.url}/v1/authorizations/{aid}/capture",
        json=capture(minor),
        headers={"Idempotency-Key": f"{aid}:capture"},
        timeout=30,
    )


def _row(gw: EmbeddedGateway, aid: str) -> dict[str, Any]:
    return next(r for r in gw.ledger.all_authorizations() if r["id"] == aid)


def _held_then_lost_capture(
    gw: EmbeddedGateway, proxy: RecordingProxy, localstripe: str, aid: str
) -> None:
    card = stripe_payment_method(localstripe, STRIPE_APPROVE)
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    proxy.lose_answers = True
    assert _capture(gw, aid, 3300).status_code == 504
    proxy.lose_answers = False
    row = _row(gw, aid)
    assert (row["status"], row["op"], row["op_state"]) == ("approved", "capture", "unknown")
    at_stripe = gw.processors.get("stripe", "acct_outage").status(
        payment_id=aid, reference=row["processor_ref"]
    )
    assert at_stripe.state is PaymentState.CAPTURED  # Stripe did it; the gateway cannot know


def _settled(gw: EmbeddedGateway, aid: str) -> None:
    row = _row(gw, aid)
    assert (row["status"], row["amount_captured"], row["op"]) == ("captured", 3300, None)
    moves = [
        (m["kind"], m["amount"]) for m in gw.ledger.all_movements() if m["authorization_id"] == aid
    ]
    expected = [("hold", 5000), ("capture", 3300)]
    if row["card_kind"] == "lightning":  # paid up front: the rest is owed back, recorded once
        expected.append(("change_owed", 1700))
    assert moves == expected
    retried = _capture(gw, aid, 3300)  # the kiosk's retry gets the outcome
    assert retried.status_code == 200 and retried.json()["status"] == "captured"


@pytest.mark.slow
def test_a_lost_capture_answer_is_unknown_then_resolved_by_the_reconciler(
    gw: EmbeddedGateway, stripe_proxy: RecordingProxy, localstripe: str
) -> None:
    _held_then_lost_capture(gw, stripe_proxy, localstripe, "outage-session-1")
    assert gw.reconciler.work() == 1
    _settled(gw, "outage-session-1")


@pytest.mark.slow
def test_a_forged_webhook_is_refused_but_makes_the_gateway_ask_stripe(
    gw: EmbeddedGateway, stripe_proxy: RecordingProxy, localstripe: str
) -> None:
    _held_then_lost_capture(gw, stripe_proxy, localstripe, "outage-session-2")
    forged = requests.post(
        f"{gw.url}/webhooks/stripe/acct_outage",
        data=b'{"type": "payment_intent.succeeded"}',
        headers={"Stripe-Signature": "t=1,v1=00"},
        timeout=30,
    )
    assert forged.status_code == 400
    assert gw.ledger.webhooks() == []  # nothing of it believed or remembered
    _settled(gw, "outage-session-2")


@pytest.mark.slow
def test_a_lost_lightning_capture_answer_is_resolved_by_the_reconciler(
    tmp_path: Path, lnbits: Lnbits
) -> None:
    driver = lnbits.wallet("outage-driver", sats=1_000_000)
    proxy = RecordingProxy(lnbits.url).start()
    file = lightning_processors(tmp_path, lnbits, "outage-operator", url=proxy.url)
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", processors_file=file)
    gw.up()
    try:
        aid = "outage-lightning-1"
        wallet = CardRef(
            kind=LIGHTNING, token="", brand="lightning", last4="", expiry=None, payload={}
        )
        asked = {"authorization_id": aid, "terminal_id": TERMINAL, "card": wallet}
        pending = gw.payments.hold_web(**asked, amount=Money(5000, "EUR"))
        lnbits.pay(driver, pending.pay["bolt11"])
        held = gw.payments.hold_web(**asked, amount=Money(5000, "EUR"))
        assert held.answer.body["status"] == "approved"
        # LNbits records the capture on the invoice; its answer never comes back.
        proxy.lose_answers, proxy.lose_only = True, "PATCH"
        assert _capture(gw, aid, 3300).status_code == 504
        proxy.lose_answers = False
        row = _row(gw, aid)
        assert (row["status"], row["op"], row["op_state"]) == ("approved", "capture", "unknown")
        at_lnbits = gw.processors.get("lightning", "op-wallet").status(
            payment_id=aid, reference=row["processor_ref"]
        )
        assert at_lnbits.state is PaymentState.CAPTURED  # LNbits has it; the gateway cannot know

        assert gw.reconciler.work() == 1
        _settled(gw, aid)
        patches = [ex for ex in proxy.exchanges if ex.method == "PATCH"]
        assert len(patches) == 1  # recorded once, never sent again
    finally:
        gw.close()
        proxy.close()


@pytest.mark.slow
def test_a_lost_adyen_capture_answer_waits_for_its_notification(
    adyen_gw: EmbeddedGateway, prism_proxy: RecordingProxy
) -> None:
    gw, aid = adyen_gw, "outage-adyen-1"
    prism_proxy.prefer = "example=card-securedfields"
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=_card(), amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    prism_proxy.prefer = None
    prism_proxy.lose_answers = True
    assert _capture(gw, aid, 3300).status_code == 504
    prism_proxy.lose_answers = False
    row = _row(gw, aid)
    assert (row["status"], row["op"], row["op_state"]) == ("approved", "capture", "unknown")
    # Adyen publishes no status: the reconciler cannot learn the outcome and guesses nothing;
    # the kiosk's retry is told "no answer" again.
    gw.reconciler.work()
    assert _row(gw, aid)["op_state"] == "unknown"
    assert _capture(gw, aid, 3300).status_code == 504

    notice = _notification(
        code="CAPTURE",
        pspReference="CAPTOUTAGE000001",
        originalReference=held.answer.body.get("processor_ref") or _row(gw, aid)["processor_ref"],
        merchantReference=aid,
        amount={"currency": "EUR", "value": 3300},
    )
    notified = requests.post(
        f"{gw.url}/webhooks/adyen/{ACCOUNT}",
        json=notice,
        timeout=30,
    )
    assert (notified.status_code, notified.text) == (200, "[accepted]")
    _settled(gw, aid)
