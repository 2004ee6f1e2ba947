"""The driver's portal in Debian's Chromium at a phone and a desktop size: sign in by the
e-mailed link (a local aiosmtpd server), link a card with a receipt's proof, the history, a
session, block an RFID token; every page screenshotted, inside the viewport's width, and
without a serious or critical axe-core violation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from terminal.money import Money
from tests.web.browser import SIZES, look
from tests.web.console_app import Clock
from tests.web.generate import Generator
from tests.web.live import context, live_gateway
from tests.web.mail_sink import mail_sink

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("size", SIZES)
def test_a_driver_signs_in_links_a_card_and_blocks_a_token_in_chromium(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    with (
        mail_sink() as (sink, mailer),
        live_gateway(tmp_path, clock, mailer) as gateway,
        context(browser, size) as ctx,
    ):
        gen = Generator(gateway.payments, clock, seed=21)
        card = gen.session(clock.now, currency="EUR", token="tok-browser-card-1")
        paid = gen.done[-1]
        fob = gen.session(
            clock.now, currency="EUR", kind="id_token", token="tok-browser-fob-1", last4=""
        )
        fob_paid = gen.done[-1]
        ledger = gateway.ledger
        page = ctx.new_page()
        page.goto(f"{gateway.url}/account")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        look(page, "portal-sign-in", size)
        page.get_by_label("E-mail address").fill("dana@example.org")
        page.get_by_role("button", name="Send me a link").click()
        expect(page.get_by_role("status")).to_contain_text("on its way")
        look(page, "portal-link-sent", size)
        page.goto(sink.link("dana@example.org"))
        look(page, "portal-confirm", size)
        page.get_by_role("button", name="Sign in to my account").click()
        expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
        look(page, "portal-history-empty", size)

        page.get_by_role("link", name="Cards and tokens").click()
        for receipt, aid, done in (
            (paid.receipt_id, card, paid),
            (fob_paid.receipt_id, fob, fob_paid),
        ):
            page.get_by_label("Receipt id").fill(receipt)
            page.get_by_label("Last 4 digits").fill(ledger.fetch(aid).card_last4)  # type: ignore[union-attr]  # "" for the fob
            page.get_by_label("Amount paid").fill(str(Money(done.amount, "EUR").to_decimal()))
            page.get_by_role("button", name="Link", exact=True).click()
            expect(page.get_by_role("heading", name="Cards and tokens")).to_be_visible()
        expect(page.locator("table.rows tbody tr")).to_have_count(2)
        look(page, "portal-cards", size)
        page.get_by_role("button", name="Block Token ").click()
        expect(page.locator("td.state", has_text="blocked")).to_have_count(1)
        assert ledger.token_lists()[1] == ["tok-browser-fob-1"]
        look(page, "portal-cards-blocked", size)

        page.get_by_role("link", name="My sessions").click()
        expect(page.locator("tr[data-session]")).to_have_count(2)
        look(page, "portal-history", size)
        page.locator(f'tr[data-session="{card}"] a').first.click()
        expect(page.locator('[data-fact="paid"]')).to_have_text(Money(paid.amount, "EUR").format())
        look(page, "portal-session", size)


@pytest.mark.parametrize("size", SIZES)
def test_a_driver_adds_a_passkey_and_signs_in_with_it(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    """Chromium's virtual authenticator (DevTools WebAuthn domain) stands in for the phone's
    platform authenticator. WebAuthn does not take an IP address as the relying party, so the
    browser uses the gateway as http://localhost (a secure context)."""
    with (
        mail_sink() as (sink, mailer),
        live_gateway(tmp_path, None, mailer) as gateway,
        context(browser, size) as ctx,
    ):
        base = gateway.url.replace("127.0.0.1", "localhost")
        page = ctx.new_page()
        devtools = ctx.new_cdp_session(page)
        devtools.send("WebAuthn.enable")
        devtools.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        page.goto(f"{base}/account/sign-in")
        page.get_by_label("E-mail address").fill("gail@example.org")
        page.get_by_role("button", name="Send me a link").click()
        expect(page.get_by_role("status").first).to_contain_text("on its way")
        page.goto(sink.link("gail@example.org"))
        page.get_by_role("button", name="Sign in to my account").click()
        expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
        page.get_by_role("link", name="Cards and tokens").click()
        expect(page.locator('[data-fact="passkeys"]')).to_contain_text("0 passkey(s)")
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator('[data-fact="passkeys"]')).to_contain_text("1 passkey(s)")
        look(page, "portal-passkey-added", size)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        look(page, "portal-sign-in-passkey", size)
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
        assert len(sink.messages) == 1  # no second e-mail was needed
