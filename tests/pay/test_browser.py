"""Pay by phone in a real browser, through the processors' own peers: Debian's Chromium via
Playwright at a phone's viewport opens the link in the kiosk's QR code and pays
- by card through Stripe: the page's script with localstripe's stripe.js (its card element,
  a SetupIntent confirmed in the browser, the PaymentMethod posted to the gateway); phone
  wallets routed to Stripe too, whose button stays hidden in a browser without a wallet;
- by card through Adyen: the page's card fields encrypted in the browser by Adyen's CSE
  library (vendored) with the account's public key, only the ciphertexts posted; the gateway's
  `/payments` validated by Prism against Adyen's OpenAPI document, the fields opened by the
  books holding the account's private key, the capture confirmed by Adyen's signed
  notification;
- with Lightning, with JavaScript switched off: the invoice's QR code and `lightning:` link,
  paid from the driver's LNbits wallet, the page refreshing itself until the kiosk starts.
Then the kiosk charges, the phone stops it, the capture is the priced energy, and the phone's
page and the receipt page show it. Screenshots under test-artifacts/pay/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from launcher.simulate import Simulation
from tests.ledger_check import assert_ledger_agrees
from tests.pay.conftest import Routing, Run, adyen_routing, lightning_routing, qr, stripe_routing
from tests.processors.adyen_books import AdyenBooks
from tests.processors.stack import ADYEN_ACCOUNT, Lnbits

PHONE = {"width": 390, "height": 844}
pytestmark = pytest.mark.slow


def fits(page: Page) -> None:
    """Nothing wider than the phone's screen."""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


def phone(browser: Browser, *, script: bool) -> BrowserContext:
    return browser.new_context(
        viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True, java_script_enabled=script
    )


def charge_stop_and_read_the_receipt(
    sim: Simulation,
    page: Page,
    shots: Path,
    name: str,
    settle: Callable[[], None] | None = None,
) -> None:
    """From "Paid: starting" on the phone: the kiosk starts, charges, the phone stops it, the
    capture is the priced energy and both pages show it. `settle`: what the processor does
    after the capture request (Adyen: its CAPTURE notification)."""
    sim.run_lines("wait 1s\nexpect plug-in")  # the kiosk's poll takes the start
    page.reload()
    expect(page.locator("h1")).to_have_text("Ready: plug in")
    sim.run_lines("plug\nev charge\nexpect charging\nwait 30m")
    page.locator("#stop").click()
    page.wait_for_load_state()
    sim.run_lines("wait 10s\nexpect receipt")
    if settle is not None:
        settle()
        sim.run_lines("wait 2m")  # the kiosk asks again; the capture is confirmed now
    page.reload()
    [result] = sim.results()
    assert (result["ended"], result["settlement"]) == ("remote", "captured")
    assert result["amount_captured"] == result["amount_priced"] > 0
    shown = f"{result['amount_captured'] / 100:.2f} EUR"
    assert page.locator("#captured").inner_text() == shown
    page.screenshot(path=str(shots / f"{name}-charged.png"), full_page=True)
    page.locator("#receipt").click()
    page.wait_for_url("**/receipts/**")
    assert shown in page.content()
    fits(page)
    page.screenshot(path=str(shots / f"{name}-receipt.png"), full_page=True)
    [row] = sim.gateway.ledger.all_authorizations()
    assert row["amount_captured"] == result["amount_captured"]
    assert_ledger_agrees(sim)


def kiosk(paying: Run, routing: Routing) -> tuple[Simulation, str]:
    sim = paying("expect idle", routing)
    return sim, qr(sim)


def test_scan_pay_by_card_through_stripe_charge_stop_and_read_the_receipt(
    paying: Run, localstripe: str, tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    shots = artifacts / "pay"
    shots.mkdir(exist_ok=True)
    sim, url = kiosk(paying, stripe_routing(tmp_path, localstripe, wallet=True))
    context = phone(browser, script=True)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.locator("h1").inner_text() == "Pay to charge"
        # Phone wallets are routed to Stripe too, but this Chromium has no wallet and
        # localstripe's stripe.js no payment request: the wallet button stays hidden, the
        # card form is the way to pay. (Chromium has the W3C Payment Request API itself.)
        assert page.evaluate("() => typeof window.PaymentRequest") == "function"
        assert page.evaluate("() => typeof Stripe('pk_test_x').paymentRequest") == "undefined"
        expect(page.locator("#way-wallet")).to_be_hidden()
        card = page.locator("#card-element")
        # localstripe's card element: its own inputs, in place of Stripe's iframe.
        card.locator("input[placeholder=number]").fill("4242424242424242")
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("34")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("10115")
        fits(page)
        page.screenshot(path=str(shots / "stripe-pay.png"), full_page=True)
        page.locator("#pay-card").click()
        page.wait_for_url("**/pay/sessions/**")
        assert page.locator("h1").inner_text() == "Paid: starting"
        [row] = sim.gateway.ledger.all_authorizations()
        assert (row["processor"], row["card_kind"]) == ("stripe", "web_card")
        charge_stop_and_read_the_receipt(sim, page, shots, "stripe")
    finally:
        context.close()


def test_scan_pay_with_lightning_without_javascript_charge_stop_and_read_the_receipt(
    paying: Run, lnbits: Lnbits, tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    shots = artifacts / "pay"
    shots.mkdir(exist_ok=True)
    routing = lightning_routing(tmp_path, lnbits)
    pay: Callable[[str], object] | None = routing.pay
    assert pay is not None
    sim, url = kiosk(paying, routing)
    context = phone(browser, script=False)
    page = context.new_page()
    try:
        page.goto(url)
        page.locator("#pay-lightning").click()
        page.wait_for_url("**/pay/sessions/**")
        assert page.locator("h1").inner_text() == "Pay the invoice"
        assert page.locator("#invoice-qr svg").is_visible()
        link = page.locator("#wallet").get_attribute("href") or ""
        assert link.startswith("lightning:lnbc")
        fits(page)
        page.screenshot(path=str(shots / "lightning-invoice.png"), full_page=True)
        pay(link.removeprefix("lightning:"))
        # No script: the page's own refresh finds the invoice paid and the kiosk asked.
        expect(page.locator("h1")).to_have_text("Paid: starting", timeout=30_000)
        [row] = sim.gateway.ledger.all_authorizations()
        assert (row["processor"], row["card_kind"]) == ("lightning", "lightning")
        charge_stop_and_read_the_receipt(sim, page, shots, "lightning")
    finally:
        context.close()


def test_scan_pay_by_card_through_adyen_charge_stop_and_read_the_receipt(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    shots = artifacts / "pay"
    shots.mkdir(exist_ok=True)
    sim, url = kiosk(paying, adyen_routing(tmp_path, adyen_books))
    context = phone(browser, script=True)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.locator("h1").inner_text() == "Pay to charge"
        # Adyen's test card (https://docs.adyen.com/development-resources/testing/test-card-numbers).
        page.locator("#adyen-number").fill("4111 1111 1111 1111")
        page.locator("#adyen-month").fill("03")
        page.locator("#adyen-year").fill("2030")
        page.locator("#adyen-cvc").fill("737")
        page.locator("#adyen-holder").fill("Jo Driver")
        fits(page)
        page.screenshot(path=str(shots / "adyen-pay.png"), full_page=True)
        page.locator("#pay-adyen").click()
        page.wait_for_url("**/pay/sessions/**")
        assert page.locator("h1").inner_text() == "Paid: starting"
        [row] = sim.gateway.ledger.all_authorizations()
        assert (row["processor"], row["card_kind"]) == ("adyen", "web_card")
        # What reached Adyen: ciphertexts only, in a request Adyen's own document describes,
        # which open (with the account's private key) to the card the phone typed.
        [payment] = [ex for ex in adyen_books.exchanges if ex.path == "/payments"]
        assert "sl-violations" not in {k.lower() for k in payment.answer_headers}
        sent = json.loads(payment.body)["paymentMethod"]
        assert sent["type"] == "scheme" and sent["holderName"] == "Jo Driver"
        for name in ("encryptedCardNumber", "encryptedExpiryMonth", "encryptedSecurityCode"):
            assert sent[name].startswith("adyenjs_0_1_19$")
        assert b"4111111111111111" not in payment.body
        assert adyen_books.opened[row["processor_ref"]] == {
            "number": "4111111111111111",
            "expiryMonth": "03",
            "expiryYear": "2030",
            "cvc": "737",
        }

        def notify() -> None:
            for notice in adyen_books.notifications(row["processor_ref"]):
                answer = requests.post(
                    f"{sim.gateway.url}/webhooks/adyen/{ADYEN_ACCOUNT}", data=notice, timeout=30
                )
                assert answer.text == "[accepted]", answer.text

        charge_stop_and_read_the_receipt(sim, page, shots, "adyen", settle=notify)
        for exchange in adyen_books.exchanges:
            assert "sl-violations" not in {k.lower() for k in exchange.answer_headers}
    finally:
        context.close()
