"""Pay by phone in a real browser: Debian's Chromium through Playwright at a phone's
viewport. The phone opens the link in the kiosk's QR code, pays with the simulated
processor's test card, the kiosk starts and charges, the phone stops it, the capture is the
priced energy, and the phone's page shows the amount and links the receipt, whose page
shows it too. Screenshots under test-artifacts/pay/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from launcher.simulate import Simulation
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees

PHONE = {"width": 390, "height": 844}
pytestmark = pytest.mark.slow


def fits(page: Page) -> None:
    """Nothing wider than the phone's screen."""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


def test_scan_pay_charge_stop_from_the_phone_and_read_the_receipt(
    simulate: Callable[..., Simulation], config: Config, browser: Browser, artifacts: Path
) -> None:
    shots = artifacts / "pay"
    shots.mkdir(exist_ok=True)
    sim = simulate(
        "expect idle", replace(config, payment=replace(config.payment, pay_by_phone=True))
    )
    frame = sim.hardware.display.current
    assert frame is not None and frame.qr is not None
    context = browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(frame.qr)
        assert page.locator("h1").inner_text() == "Pay to charge"
        assert "50.00 EUR" in page.locator(".hold").inner_text()
        fits(page)
        page.screenshot(path=str(shots / "pay.png"), full_page=True)
        page.locator("#pay").click()
        page.wait_for_url("**/pay/sessions/**")
        assert page.locator("h1").inner_text() == "Paid: starting"
        sim.run_lines("wait 1s\nexpect plug-in")  # the kiosk's poll takes the start
        page.reload()
        assert page.locator("h1").inner_text() == "Ready: plug in"
        fits(page)
        sim.run_lines("plug\nev charge\nexpect charging\nwait 30m")
        page.locator("#stop").click()
        page.wait_for_load_state()
        sim.run_lines("wait 10s\nexpect receipt")
        page.reload()
        [result] = sim.results()
        assert result["amount_captured"] == result["amount_priced"] > 0
        shown = f"{result['amount_captured'] / 100:.2f} EUR"
        assert page.locator("#captured").inner_text() == shown
        page.screenshot(path=str(shots / "charged.png"), full_page=True)
        page.locator("#receipt").click()
        page.wait_for_url("**/receipts/**")
        assert shown in page.content()
        fits(page)
        page.screenshot(path=str(shots / "receipt.png"), full_page=True)
    finally:
        context.close()
    assert_ledger_agrees(sim)
