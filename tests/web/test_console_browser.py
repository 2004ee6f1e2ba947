"""The operator's console in Debian's Chromium at a phone and a desktop size: every page
screenshotted, inside the viewport's width, and without a serious or critical axe-core
violation."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.web.browser import SIZES, look
from tests.web.live import context, live_gateway, sign_in

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
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        expect(page.locator("tr.entry").first).to_contain_text("operator.sign_in")
        look(page, "console-audit", size)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(f"{gateway.url}/console/audit")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
