"""The driver's receipt page (the kiosk's QR code) on a phone, in real headless Chromium: in
each language the browser asks for (Accept-Language) and through the page's language switch,
at two phone sizes, with a screenshot of each under test-artifacts/receipt-page/. The page
shows the rows the kiosk's receipt screen shows (each line incl. VAT with its unit price, VAT
per rate, the total = the capture), fits the phone's width, and its total is in view once
scrolled to. A receipt of the wire's first form (lines excl. VAT only) still reads right."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page

from gateway.server import EmbeddedGateway
from terminal.core import screens
from terminal.core.bill_wire import bill_to_wire
from terminal.core.billing import LIMIT, Bill, BillLine, make_bill
from terminal.core.words import LANGUAGES
from terminal.i18n import Translator
from terminal.money import Money
from tests.gateway.test_idempotency import authorization, capture

pytestmark = pytest.mark.timeout(240)

PHONES = {"360x640": (360, 640), "390x844": (390, 844)}
# The browser's own language setting, as a phone sends it.
ACCEPT = {"en": "en-GB", "de": "de-DE", "fr": "fr-FR", "nl": "nl-BE"}
STARTED = datetime(2026, 1, 20, 17, 0, tzinfo=UTC)
ENDED = STARTED + timedelta(hours=3, minutes=15)

# Every element drawn must lie within the phone's width (the page scrolls down, never across).
TOO_WIDE = """() => {
  const out = [], W = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > W) out.push("page wider than the screen");
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -1 || r.right > W + 1)
      out.push(el.tagName + " '" + el.textContent.trim().slice(0, 30) + "' " + r.right);
  }
  return out;
}"""


def limited_bill() -> Bill:
    """A bill with every kind of line, cut to the authorized amount (as the kiosk makes it)."""

    def line(dim: str, qty: str, unit: str, minor: int, price: str | None) -> BillLine:
        return BillLine(
            dimension=dim,
            quantity=Decimal(qty),
            unit=unit,
            incl_vat=Money(minor, "EUR"),
            vat_percent=Decimal(19),
            unit_price=None if price is None else Decimal(price),
        )

    return make_bill([
        line("FLAT", "1", "session", 60, "0.60"),
        line("ENERGY", "48.731", "kWh", 2610, "0.5355"),
        line("TIME", "2.5", "h", 357, "0.0238"),
        line("PARKING_TIME", "0.75", "h", 536, "0.119"),
        line(LIMIT, "1", "session", -563, None),
    ], "EUR")  # fmt: skip


def receipt_body(receipt_id: str, bill: Bill) -> dict[str, Any]:
    return {
        "receipt_id": receipt_id,
        "station": "Marktplatz 12, Ladesäule 2, Musterstadt-Nord",
        "tariff": "time-of-day-with-idle-fee",
        "card": "Mastercard **** 4444",
        "started_at": STARTED.isoformat(),
        "ended_at": ENDED.isoformat(),
        "energy_wh": 48_731,
        "currency": "EUR",
        **bill_to_wire(bill),
    }


def kiosk_fields(bill: Bill, language: str) -> list[tuple[str, str]]:
    """The rows of the kiosk's receipt screen for the same bill, in `language`."""
    screen = screens.Receipt(
        receipt_id="R1",
        url="http://example.invalid/receipts/R1",
        station="S",
        tariff="T",
        card="Mastercard **** 4444",
        started_at=STARTED.isoformat(),
        ended_at=ENDED.isoformat(),
        energy_wh=48_731,
        bill=bill,
        total=bill.total,
        end_reason="cost_cap",
    )
    return list(screens.frame_for(screen, Translator(language, UTC)).fields)


def hold_and_capture(gw: EmbeddedGateway, aid: str, body: dict[str, Any]) -> None:
    answer = requests.post(
        f"{gw.url}/v1/authorizations",
        json=authorization(aid),
        headers={"Idempotency-Key": f"{aid}:a"},
        timeout=10,
    )
    assert answer.json()["status"] == "approved", answer.text
    answer = requests.post(
        f"{gw.url}/v1/authorizations/{aid}/capture",
        json=body,
        headers={"Idempotency-Key": f"{aid}:c"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGateway]:
    db = tmp_path_factory.mktemp("receipt-page") / "gateway.sqlite3"
    gw = EmbeddedGateway(db_url=f"sqlite:///{db}")
    gw.up()
    try:
        bill = limited_bill()
        hold_and_capture(
            gw,
            "auth-receipt-page-1",
            {
                "amount": {"minor": bill.total.minor, "currency": "EUR"},
                "energy_wh": 48_731,
                "receipt": receipt_body("7QK2M4XR9TB3WZ5N", bill),
            },
        )
        # A receipt of the wire's first form: its lines carry only `excl_vat`.
        legacy = capture(321)
        legacy["receipt"]["receipt_id"] = "LEGACY0001"
        hold_and_capture(gw, "auth-receipt-page-2", legacy)
        yield gw
    finally:
        gw.close()


def rows(page: Page) -> list[tuple[str, str]]:
    cells: list[list[str]] = page.eval_on_selector_all(
        "#bill .line, #bill .total",
        "rows => rows.map(r => [r.querySelector('.label').innerText,"
        " r.querySelector('.value').innerText])",
    )
    return [(label, value) for label, value in cells]


@pytest.mark.parametrize("size", PHONES)
def test_the_receipt_page_reads_like_the_kiosk_in_each_language_on_a_phone(
    browser: Browser, gateway: EmbeddedGateway, artifacts: Path, size: str
) -> None:
    width, height = PHONES[size]
    bill = limited_bill()
    problems: list[str] = []
    for language in LANGUAGES:
        context = browser.new_context(
            viewport={"width": width, "height": height}, locale=ACCEPT[language]
        )
        try:
            page = context.new_page()
            answer = page.goto(f"{gateway.url}/receipts/7QK2M4XR9TB3WZ5N")
            assert answer is not None and answer.status == 200
            assert answer.headers["content-language"] == language
            assert page.get_attribute("html", "lang") == language
            words = Translator(language, UTC)
            assert page.inner_text("#heading") == words.text("Receipt {}").format(
                "7QK2M4XR9TB3WZ5N"
            )
            # The rows the kiosk shows, in the same order, the total (= the capture) last.
            expected = kiosk_fields(bill, language)
            assert rows(page) == expected, language
            total = page.locator("#total-value")
            assert total.inner_text() == words.number(str(bill.total))
            assert bill.total == Money(3000, "EUR")
            limit = words.text("Limited to the authorized amount")
            assert (limit, words.number("-5.63 EUR")) in expected
            total.scroll_into_view_if_needed()
            assert total.is_visible()
            box = total.bounding_box()
            assert box is not None and box["y"] + box["height"] <= height
            assert box["x"] + box["width"] <= width
            problems += [f"{size} {language}: {p}" for p in page.evaluate(TOO_WIDE)]
            out = artifacts / "receipt-page" / size
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / f"{language}.png"), full_page=True)
        finally:
            context.close()
    assert not problems, "\n".join(problems)


def test_the_language_switch_changes_the_page_and_marks_the_current_language(
    browser: Browser, gateway: EmbeddedGateway
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{gateway.url}/receipts/7QK2M4XR9TB3WZ5N")
        assert page.get_attribute("html", "lang") == "en"
        assert page.get_attribute('nav a[hreflang="en"]', "aria-current") == "true"
        page.click('nav a[hreflang="de"]')
        page.wait_for_selector('html[lang="de"]')
        assert page.inner_text("#heading") == "Beleg 7QK2M4XR9TB3WZ5N"
        assert page.get_attribute('nav a[hreflang="de"]', "aria-current") == "true"
        assert page.get_attribute('nav a[hreflang="en"]', "aria-current") is None
        assert rows(page)[-1] == ("Gesamt", "30,00 EUR")
        page.click('nav a[hreflang="nl"]')
        page.wait_for_selector('html[lang="nl"]')
        assert rows(page) == kiosk_fields(limited_bill(), "nl")
    finally:
        context.close()


def test_a_receipt_with_lines_excl_vat_only_says_so_and_totals_the_capture(
    browser: Browser, gateway: EmbeddedGateway
) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 640}, locale="fr-FR")
    try:
        page = context.new_page()
        page.goto(f"{gateway.url}/receipts/LEGACY0001")
        assert rows(page) == [
            ("Énergie", "8,25 kWh"),
            ("Carte", "Visa **** 0010"),
            ("Énergie 8,250 kWh (HT)", "3,21 EUR"),
            ("HT", "3,21 EUR"),
            ("TVA 0 % sur 3,21 EUR", "0,00 EUR"),
            ("Total", "3,21 EUR"),
        ]
        assert page.evaluate(TOO_WIDE) == []
    finally:
        context.close()


def test_an_unknown_receipt_is_404_in_the_drivers_language(gateway: EmbeddedGateway) -> None:
    answer = requests.get(
        f"{gateway.url}/receipts/NOSUCHRECEIPT1",
        headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"},
        timeout=10,
    )
    assert answer.status_code == 404
    assert answer.headers["content-language"] == "nl"
    assert "Bon niet gevonden" in answer.text


@pytest.mark.parametrize(
    ("chosen", "accept", "language"),
    [
        (None, None, "en"),
        (None, "de-AT,de;q=0.9", "de"),
        (None, "da, nl;q=0.6, de;q=0.5", "nl"),  # Danish is not spoken: the next best
        (None, "fr;q=0, en;q=0.1", "en"),  # q=0 means "not French"
        (None, "x;;q=abc,,de;q=0.2", "de"),  # malformed parts are passed over
        ("fr", "de", "fr"),  # the switch wins over the browser
        ("xx", "nl", "nl"),  # a language the pages do not speak: the browser's
    ],
)
def test_the_page_language_is_the_choice_then_the_browsers_then_english(
    gateway: EmbeddedGateway, chosen: str | None, accept: str | None, language: str
) -> None:
    params = {} if chosen is None else {"lang": chosen}
    headers = {} if accept is None else {"Accept-Language": accept}
    answer = requests.get(
        f"{gateway.url}/receipts/7QK2M4XR9TB3WZ5N", params=params, headers=headers, timeout=10
    )
    assert answer.status_code == 200
    assert answer.headers["content-language"] == language
    assert f'<html lang="{language}">' in answer.text
