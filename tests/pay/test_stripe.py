"""Pay by phone by card through Stripe, on the simulator, against localstripe: the operator's
routing sends `web_card` to a Stripe account, so the page offers Stripe's card element
(stripe.js from localstripe) and no test card. The simulator's phone does what the page's
script does in a browser (a SetupIntent from the gateway, confirmed at Stripe with the card,
its PaymentMethod posted to the page); the hold is a manual-capture PaymentIntent, captured
at the priced energy. Stripe's declining test card charges nothing and leaves the code open.
Chromium runs the page's real script in `test_browser.py`."""

from __future__ import annotations

from pathlib import Path

import requests

from gateway.processors.port import PaymentState
from terminal.money import Money
from tests.ledger_check import assert_ledger_agrees
from tests.pay.conftest import STRIPE_PUBLISHABLE, Run, phone_session, qr, stripe_routing
from tests.processors.stack import STRIPE_APPROVE, stripe_payment_method


def test_paid_by_card_through_stripe_charged_stopped_from_the_phone_and_captured(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    sim = paying(phone_session("card"), stripe_routing(tmp_path, localstripe))
    page = sim.phone.pages[0]
    # Exactly what is routed: the card to Stripe; Lightning goes to the simulated default,
    # which has none, and the simulated test card is not offered.
    assert 'id="way-stripe"' in page
    assert 'id="way-test-card"' not in page and 'id="way-lightning"' not in page
    assert f'<script src="{localstripe}/js.stripe.com/v3/"></script>' in page
    assert f'data-key="{STRIPE_PUBLISHABLE}"' in page
    [result] = sim.results()
    assert (result["ended"], result["settlement"]) == ("remote", "captured")
    assert result["amount_captured"] == result["amount_priced"] > 0
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["processor"], row["card_kind"], row["status"]) == ("stripe", "web_card", "captured")
    assert row["card_token"].startswith("pm_")
    # Stripe's own books: the PaymentIntent captured the priced amount.
    at_stripe = sim.gateway.processors.get("stripe", "acct_web").status(
        payment_id=row["id"], reference=row["processor_ref"]
    )
    assert at_stripe.state is PaymentState.CAPTURED
    assert at_stripe.captured == Money(result["amount_captured"], "EUR")
    shown = requests.get(sim.phone.session_url or "", timeout=10).text
    assert f"{result['amount_captured'] / 100:.2f} EUR" in shown
    assert_ledger_agrees(sim)


def test_a_card_stripe_declines_charges_nothing_and_the_code_can_be_paid_again(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    sim = paying("expect idle", stripe_routing(tmp_path, localstripe))
    url = qr(sim)
    sim.run_lines("pay qr declined")
    assert "The payment was declined" in sim.phone.pages[-1]
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["processor"], row["status"]) == ("stripe", "declined")
    assert qr(sim) == url  # the code is open again
    sim.run_lines("pay qr card\nexpect plug-in\nwait 3m\nexpect idle")
    assert_ledger_agrees(sim)  # the plug-in timeout released the paid hold


def test_a_payment_method_not_from_stripes_form_is_refused_before_any_hold(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    sim = paying("expect idle", stripe_routing(tmp_path, localstripe))
    url = qr(sim)
    for form in (
        {"method": "web_card", "payment_method": "tok_visa"},
        {"method": "web_card", "test_card": "4242"},
        {"method": "web_card"},
    ):
        assert requests.post(url, data=form, timeout=30).status_code == 400
    assert sim.gateway.ledger.all_authorizations() == []


def test_without_the_publishable_key_no_card_form_is_offered(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    sim = paying("expect idle", stripe_routing(tmp_path, localstripe, publishable=False))
    page = requests.get(qr(sim), timeout=10).text
    assert 'id="way-stripe"' not in page and "<script" not in page
    assert requests.post(qr(sim) + "/card-setup", timeout=10).status_code == 404


def test_a_phone_wallet_through_stripe_starts_the_kiosk_and_is_captured_as_a_wallet(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    """The wallet's PaymentMethod is what stripe.js's payment request hands the page; here one
    made at localstripe from a test card stands in for it (localstripe's stripe.js has no
    payment request and no wallet), so this shows the page's wallet form, its routing to
    Stripe as `web_wallet`, the hold and the capture — not Apple Pay or Google Pay."""
    sim = paying("expect idle", stripe_routing(tmp_path, localstripe, wallet=True))
    url = qr(sim)
    page = requests.get(url, timeout=10).text
    section = page.split('id="way-wallet"')[1].split(">")[0]
    assert "hidden" in section  # shown only by the script, where the browser has a wallet
    assert 'data-country="DE"' in page and 'data-amount="5000"' in page
    assert 'data-currency="eur"' in page
    assert '<script src="/pay/static/stripe-wallet.js"></script>' in page
    assert 'id="way-stripe"' in page  # the card form stays beside it
    method = stripe_payment_method(localstripe, STRIPE_APPROVE).token
    paid = requests.post(url, data={"method": "web_wallet", "payment_method": method}, timeout=30)
    assert "/pay/sessions/" in paid.url
    sim.run_lines(
        "wait 1s\nexpect plug-in\nplug\nev charge\nexpect charging\nwait 30m\n"
        "unplug\nwait 10s\nexpect receipt"
    )
    [result] = sim.results()
    assert result["amount_captured"] == result["amount_priced"] > 0
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["processor"], row["card_kind"], row["status"]) == (
        "stripe",
        "web_wallet",
        "captured",
    )
    assert row["card_token"] == method
    assert_ledger_agrees(sim)


def test_without_the_accounts_country_no_wallet_is_offered_and_none_is_taken(
    paying: Run, localstripe: str, tmp_path: Path
) -> None:
    routing = stripe_routing(tmp_path, localstripe, wallet=True)
    routing.file.write_text(routing.file.read_text().replace('country = "DE"\n', ""))
    sim = paying("expect idle", routing)
    url = qr(sim)
    page = requests.get(url, timeout=10).text
    assert 'id="way-wallet"' not in page and "stripe-wallet.js" not in page
    method = stripe_payment_method(localstripe, STRIPE_APPROVE).token
    refused = requests.post(url, data={"method": "web_wallet", "payment_method": method})
    assert refused.status_code == 400
    assert sim.gateway.ledger.all_authorizations() == []
