"""Linking a card by a kiosk's code, in Debian's Chromium at a phone and a desktop size: a
simulated kiosk (the real daemon) charges against a live gateway and its receipt screen
shows the link code (read from the frame the simulated display recorded); the driver signs
in by the e-mailed link, types a wrong code (refused, nothing linked), then the code from the
screen, and the card is on the Cards page and the session in the history. Every page
screenshotted, inside the viewport's width, without a serious or critical axe-core
violation."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from hardware.sim.card_script import load_profiles
from launcher.simulate import Simulation, parse_script
from terminal.config import Config
from tests.web.browser import SIZES, look
from tests.web.live import context, live_gateway
from tests.web.mail_sink import mail_sink

pytestmark = pytest.mark.timeout(300)

SESSION = """
expect idle
tap visa
expect plug-in
plug
ev charge
expect charging
wait 20m
tap visa
expect receipt
wait 2s
"""


def _kiosk_code(config: Config, data: Path, gateway_url: str) -> str:
    sim = Simulation(config=config, data_dir=data, gateway_url=gateway_url)
    try:
        for step in parse_script(SESSION, set(load_profiles())):
            sim.run_step(step)
        shown = [f for f in sim.hardware.display.frames if f.name == "receipt" and f.code]
        assert shown, "no receipt frame with a link code"
        code = shown[-1].code
        assert code is not None
        return code[1]
    finally:
        sim.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_driver_links_the_card_by_the_code_the_kiosk_showed_in_chromium(
    browser: Browser, config: Config, tmp_path: Path, size: str
) -> None:
    with (
        mail_sink() as (sink, mailer),
        live_gateway(tmp_path, None, mailer) as gateway,
        context(browser, size) as ctx,
    ):
        code = _kiosk_code(config, tmp_path / "kiosk", gateway.url)
        page = ctx.new_page()
        page.goto(f"{gateway.url}/account/sign-in")
        page.get_by_label("E-mail address").fill("dana@example.org")
        page.get_by_role("button", name="Send me a link").click()
        expect(page.get_by_role("status").first).to_contain_text("on its way")
        page.goto(sink.link("dana@example.org"))
        page.get_by_role("button", name="Sign in to my account").click()
        expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
        page.get_by_role("link", name="Cards and tokens").click()
        expect(page.get_by_role("heading", name="With the code from the charger")).to_be_visible()
        look(page, "portal-link-code", size)

        wrong = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
        page.get_by_label("Link code").fill(wrong)
        page.get_by_role("button", name="Link with the code").click()
        expect(page.get_by_role("alert")).to_contain_text("This code is not valid.")
        expect(page.locator("table.rows tbody tr")).to_have_count(0)
        look(page, "portal-link-code-refused", size)

        page.get_by_label("Link code").fill(code)
        page.get_by_label("Name (optional)").first.fill("My Visa")
        page.get_by_role("button", name="Link with the code").click()
        expect(page.locator("table.rows tbody tr")).to_have_count(1)
        expect(page.locator('tr[data-card="My Visa"]')).to_contain_text("Payment card")
        look(page, "portal-link-code-linked", size)
        page.get_by_role("link", name="My sessions").click()
        expect(page.locator("tr[data-session]")).to_have_count(1)
