"""A switch of processor in the middle of a session, between two real adapters and their peers.

A web card session holds at Stripe (localstripe); the operator's processor file is changed under
the running gateway to send web cards to Adyen (Prism over Adyen's document). The open session
captures and is refunded at Stripe, where it was held; the next session holds at Adyen. The
same switch between two accounts of the simulated processor, across a restart too, is
`tests/gateway/test_routing.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.processors.port import PaymentState
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.gateway.test_routing import replace_file, wait_for
from tests.processors.peers import RecordingProxy
from tests.processors.stack import ADYEN_ACCOUNT, STRIPE_APPROVE, stripe_payment_method
from tests.processors.test_adyen import _card

TERMINAL = "KIOSK-0001"


def _config(localstripe: str, prism: str, route_to: str) -> str:
    account = "acct_web" if route_to == "stripe" else ADYEN_ACCOUNT
    return f"""
[[processors]]
adapter = "simulated"
account = "kiosk"

[[processors]]
adapter = "stripe"
account = "acct_web"
api_key_env = "T_STRIPE_KEY"
webhook_secret_env = "T_STRIPE_WHSEC"
api_base = "{localstripe}"

[[processors]]
adapter = "adyen"
account = "{ADYEN_ACCOUNT}"
api_key_env = "T_ADYEN_KEY"
hmac_key_env = "T_ADYEN_HMAC"
checkout_url = "{prism}"
return_url = "https://pay.example.org/return"

[[routes]]
processor = "{route_to}"
account = "{account}"
method = "web_card"
"""


def _row(gw: EmbeddedGateway, aid: str) -> dict[str, Any]:
    return next(r for r in gw.ledger.all_authorizations() if r["id"] == aid)


@pytest.mark.slow
def test_a_session_held_at_stripe_settles_there_after_a_switch_to_adyen(
    tmp_path: Path, env: None, localstripe: str, prism_proxy: RecordingProxy
) -> None:
    config = tmp_path / "processors.toml"
    config.write_text(_config(localstripe, prism_proxy.url, "stripe"))
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", processors_file=config, reload_every_s=0.1)
    gw.up()
    try:
        first = gw.payments.hold_web(
            authorization_id="switch-session-1",
            terminal_id=TERMINAL,
            card=stripe_payment_method(localstripe, STRIPE_APPROVE),
            amount=Money(5000, "EUR"),
        )
        assert first.answer.body["status"] == "approved"

        replace_file(config, _config(localstripe, prism_proxy.url, "adyen"))
        wait_for(
            lambda: (
                gw.processors.route(terminal=TERMINAL, currency="EUR", method="web_card").name
                == "adyen"
            )
        )

        captured = requests.post(
            f"{gw.url}/v1/authorizations/switch-session-1/capture",
            json=capture(3000),
            headers={"Idempotency-Key": "c1"},
            timeout=30,
        )
        assert captured.status_code == 200, captured.text
        refunded = requests.post(
            f"{gw.url}/operator/authorizations/switch-session-1/refunds",
            json={"amount": {"minor": 500, "currency": "EUR"}, "reason": "goodwill"},
            headers={"Idempotency-Key": "r1", "Authorization": f"Bearer {gw.operator_token}"},
            timeout=30,
        )
        assert refunded.status_code == 200, refunded.text

        prism_proxy.prefer = "example=card-securedfields"
        second = gw.payments.hold_web(
            authorization_id="switch-session-2",
            terminal_id=TERMINAL,
            card=_card(),
            amount=Money(5000, "EUR"),
        )
        assert second.answer.body["status"] == "approved"

        one, two = _row(gw, "switch-session-1"), _row(gw, "switch-session-2")
        at_stripe = gw.processors.get("stripe", "acct_web").status(
            payment_id="switch-session-1", reference=one["processor_ref"]
        )
    finally:
        gw.close()
    assert (one["processor"], one["merchant_account"], one["status"]) == (
        "stripe",
        "acct_web",
        "captured",
    )
    assert (at_stripe.state, at_stripe.captured, at_stripe.refunded) == (
        PaymentState.CAPTURED,
        Money(3000, "EUR"),
        Money(500, "EUR"),
    )
    assert (two["processor"], two["merchant_account"]) == ("adyen", ADYEN_ACCOUNT)
    # Only the second session's hold reached Adyen; nothing of the first went there.
    assert [ex.path for ex in prism_proxy.exchanges] == ["/payments"]
