"""Pay by phone in a real browser, through the processors' own peers: Debian's Chromium via
Playwright at a phone's viewport opens the link in the kiosk's QR code and pays
- by card through Stripe: the page's script with localstripe's stripe.js (its card element,
  a SetupIntent confirmed in the browser, the PaymentMethod posted to the gateway);
- with Lightning, with JavaScript switched off: the invoice's QR code and `lightning:` link,
  paid from the driver's LNbits wallet, the page refreshing itself until the kiosk starts.
Then the kiosk charges, the phone stops it, the capture is the priced energy, and the phone's
page and the receipt page show it. Screenshots under test-artifacts/pay/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from launcher.simulate import Simulation
from tests.ledger_check import assert_ledger_agrees
from tests.pay.conftest import Routing, Run, lightning_routing, stripe_routing
from tests.processors.stack import Lnbits

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


def charge_stop_and_read_the_receipt(sim: Simulation, page: Page, shots: Path, name: str) -> None:
    """From "Paid: starting" on the phone: the kiosk starts, charges, the phone stops it, the
    capture is the priced energy and both pages show it."""
    sim.run_lines("wait 1s\nexpect plug-in")  # the kiosk's poll takes the start
    page.reload()
    expect(page.locator("h1")).to_have_text("Ready: plug in")
    sim.run_lines("plug\nev charge\nexpect charging\nwait 30m")
    page.locator("#stop").click()
    page.wait_for_load_state()
    sim.run_lines("wait 10s\nexpect receipt")
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
    frame = sim.hardware.display.current
    assert frame is not None and frame.qr is not None
    return sim, frame.qr


def test_scan_pay_by_card_through_stripe_charge_stop_and_read_the_receipt(
    paying: Run, localstripe: str, tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    shots = artifacts / "pay"
    shots.mkdir(exist_ok=True)
    sim, url = kiosk(paying, stripe_routing(tmp_path, localstripe))
    context = phone(browser, script=True)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.locator("h1").inner_text() == "Pay to charge"
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
