"""A processor outage with a real adapter and its peer: Stripe (localstripe) acts on a capture
but its answer is lost, the step is `unknown` (the kiosk hears "no answer" and retries), and
it is resolved by asking Stripe (`status`): by the reconciler, and by the webhook endpoint when
a notification fails verification (not believed, but a reason to ask)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.processors.port import PaymentState
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.processors.conftest import processors_file
from tests.processors.peers import RecordingProxy
from tests.processors.stack import STRIPE_APPROVE, stripe_payment_method

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
    assert moves == [("hold", 5000), ("capture", 3300)]
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
