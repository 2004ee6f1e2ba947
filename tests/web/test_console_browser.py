"""The operator's console in Debian's Chromium at a phone and a desktop size: every page
screenshotted, inside the viewport's width, and without a serious or critical axe-core
violation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from terminal.money import Money
from tests.web.browser import SIZES, look
from tests.web.console_app import Clock
from tests.web.generate import Generator
from tests.web.live import context, live_gateway, sign_in
from tests.web.test_console_tariffs import TOU

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_pages_and_sign_out_in_chromium(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    with live_gateway(tmp_path) as gateway, context(browser, size) as ctx:
        page = ctx.new_page()
        page.goto(f"{gateway.url}/console")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        look(page, "console-sign-in", size)

        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill("a wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not right")
        look(page, "console-sign-in-refused", size)

        sign_in(page, gateway.url, "alice")
        expect(page.get_by_role("heading", name="Revenue")).to_be_visible()
        expect(page.locator(".empty")).to_contain_text("No captures")
        look(page, "console-revenue-empty", size)
        page.get_by_role("link", name="Audit log").click()
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        expect(page.locator("tr.entry").first).to_contain_text("operator.sign_in")
        look(page, "console-audit", size)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(f"{gateway.url}/console/audit")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_revenue_page_updates_live_as_captures_arrive(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    clock = Clock(datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0))
    with live_gateway(tmp_path, clock) as gateway, context(browser, size) as ctx:
        gen = Generator(gateway.payments, clock, seed=3)
        for _ in range(3):
            gen.session(clock.now + timedelta(minutes=5), currency="EUR")
        gen.session(clock.now + timedelta(minutes=5), currency="SEK")
        page = ctx.new_page()
        sign_in(page, gateway.url, "reader")
        page.goto(f"{gateway.url}/console/revenue?period=today")
        expect(page.locator('[data-figure="sessions-EUR"]')).to_have_text("3")
        expect(page.locator("figure.chart canvas").first).to_be_visible()
        look(page, "console-revenue", size)

        gross = sum(d.amount for d in gen.done if d.currency == "EUR")
        gen.session(clock.now + timedelta(minutes=5), currency="EUR")
        gross += gen.done[-1].amount
        # No reload: the event stream tells the page, htmx fetches the figures again.
        expect(page.locator('[data-figure="sessions-EUR"]')).to_have_text("4", timeout=15_000)
        expect(page.locator('[data-figure="gross-EUR"]')).to_have_text(Money(gross, "EUR").format())
        expect(page.locator("#live")).to_contain_text("updated")

        with page.expect_download() as download:
            page.get_by_role("link", name="Download CSV").click()
        assert "EUR" in Path(download.value.path()).read_text()


@pytest.mark.parametrize("size", SIZES)
def test_fleet_money_payments_and_a_refund_in_chromium(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    with live_gateway(tmp_path, clock) as gateway, context(browser, size) as ctx:
        gen = Generator(gateway.payments, clock, seed=4)
        aid = gen.session(clock.now, currency="EUR", terminal="KIOSK-0001")
        captured = gen.done[-1].amount
        with gateway.ledger.engine.begin() as conn:
            gateway.ledger.add_events(conn, "KIOSK-0001", [("e-0001", "fault", "pilot")])
        page = ctx.new_page()
        sign_in(page, gateway.url, "alice")
        page.get_by_role("link", name="Fleet").click()
        expect(page.locator('[data-terminal="KIOSK-0001"]')).to_contain_text("pilot")
        look(page, "console-fleet", size)
        page.get_by_role("link", name="Money").click()
        expect(page.get_by_role("heading", name="Money that needs a person")).to_be_visible()
        look(page, "console-money", size)
        page.get_by_role("link", name="Payments", exact=True).click()
        look(page, "console-payments", size)
        page.get_by_role("link", name=aid).click()
        expect(page.locator('[data-fact="refunded"]')).to_have_text("0.00 EUR")
        look(page, "console-payment", size)
        page.get_by_label("Amount in EUR").fill("0.50")
        page.get_by_label("Reason").fill("the cable was faulty")
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_role("status")).to_have_text("Refunded 0.50 EUR.")
        expect(page.locator('[data-fact="refunded"]')).to_have_text("0.50 EUR")
        look(page, "console-payment-refunded", size)
        assert gateway.payments.ledger.fetch(aid).amount_refunded == 50  # type: ignore[union-attr]
        assert captured > 50
        page.get_by_role("link", name="Tokens").click()
        page.locator('[data-list="seen"] button', has_text="Block").first.click()
        expect(page.locator('[data-list="listed"] tr')).to_have_count(2)  # header and one token
        look(page, "console-tokens", size)
        assert gateway.ledger.token_lists()[1] != []

        page.get_by_role("link", name="Tariffs").click()
        page.get_by_label("OCPI 2.2.1 Tariff object").fill(TOU)
        page.get_by_role("button", name="Save tariff").click()
        expect(page.get_by_role("heading", name="Tariff ")).to_be_visible()
        page.get_by_label("Energy (kWh)").fill("30")
        page.get_by_role("button", name="Price it").click()
        expect(page.locator('[data-fact="total"]')).to_contain_text("EUR")
        page.get_by_label("KIOSK-0001").check()
        page.get_by_role("button", name="Assign").click()
        expect(page.locator('[data-fact="stations"]')).to_have_text("KIOSK-0001")
        look(page, "console-tariff", size)
        page.get_by_role("link", name="Tariffs").click()
        look(page, "console-tariffs", size)
