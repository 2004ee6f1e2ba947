"""The kiosk page on the screens it is made for, in every language, in real headless Chromium:
each screen at 800x480, 1024x600, 1280x800 and portrait 600x1024, in English, German, French
and Dutch (picked with the page's language button), with a screenshot of each under
test-artifacts/kiosk/<size>/<language>/. On every one, every element is inside the screen,
nothing spills out of the content area or under the total bar, and on the receipt the total
is in view and on top. One browser, one page per size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from drivers.display_web import WebDisplay, WebDisplaySettings
from hardware.ports import Frame
from terminal.core import screens
from terminal.core.billing import LIMIT, BillLine, make_bill
from terminal.core.screens import frames_for
from terminal.core.words import LANGUAGES
from terminal.i18n import station_words
from terminal.money import Money
from tests.drivers.screens import RECEIPT_URL, example_screens

pytestmark = pytest.mark.timeout(240)

SIZES = {"800x480": (800, 480), "1024x600": (1024, 600), "1280x800": (1280, 800),
         "600x1024": (600, 1024)}  # fmt: skip
WAIT_MS = 5_000
BERLIN = ZoneInfo("Europe/Berlin")

# Every element that is drawn, with its box; those outside the screen or outside the box
# they are in (a figure wider than its tile), text cut off, and content that spills out of
# <main> (under the total bar or off the bottom).
OFFENDERS = """() => {
  const out = [], W = innerWidth, H = innerHeight;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + " '" + (el.textContent || "").trim().slice(0, 30) + "'";
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest(".sprite") || el.tagName === "SCRIPT") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (getComputedStyle(el).visibility === "hidden") continue;
    if (r.left < -1 || r.top < -1 || r.right > W + 1 || r.bottom > H + 1)
      out.push("outside " + name(el) + " " + [r.left, r.top, r.right, r.bottom].map(Math.round));
    if (el.children.length === 0 && el.scrollWidth > el.clientWidth + 1
        && getComputedStyle(el).overflow !== "visible") out.push("cut " + name(el));
    const parent = el.parentElement;
    if (parent !== document.body && !(el instanceof SVGElement)) {
      const p = parent.getBoundingClientRect();
      if (r.left < p.left - 1 || r.right > p.right + 1 || r.top < p.top - 1
          || r.bottom > p.bottom + 1) out.push("spills out of its box " + name(el));
    }
  }
  const main = document.querySelector("main");
  if (main.scrollHeight > main.clientHeight + 1) out.push("main overflows");
  if (main.scrollWidth > main.clientWidth + 1) out.push("main too wide");
  return out;
}"""

TOTAL_ON_TOP = """() => {
  const box = document.getElementById("total-value").getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return hit !== null && document.getElementById("total").contains(hit)
    && box.bottom <= innerHeight && box.top >= 0;
}"""


def long_receipt() -> screens.Receipt:
    """The longest receipt: every kind of line, cut to the authorized amount."""
    lines = [
        BillLine(dimension="FLAT", quantity=Decimal(1), unit="session",
                 incl_vat=Money(60, "EUR"), vat_percent=Decimal(19), unit_price=Decimal("0.60")),
        BillLine(dimension="ENERGY", quantity=Decimal("48.731"), unit="kWh",
                 incl_vat=Money(2610, "EUR"), vat_percent=Decimal(19),
                 unit_price=Decimal("0.5355")),
        BillLine(dimension="TIME", quantity=Decimal("2.5"), unit="h", incl_vat=Money(357, "EUR"),
                 vat_percent=Decimal(19), unit_price=Decimal("0.0238")),
        BillLine(dimension="PARKING_TIME", quantity=Decimal("0.75"), unit="h",
                 incl_vat=Money(536, "EUR"), vat_percent=Decimal(19),
                 unit_price=Decimal("0.119")),
        BillLine(dimension=LIMIT, quantity=Decimal(1), unit="session",
                 incl_vat=Money(-563, "EUR"), vat_percent=Decimal(19)),
    ]  # fmt: skip
    bill = make_bill(lines, "EUR")
    start = datetime(2026, 1, 20, 17, 0, tzinfo=UTC)
    return screens.Receipt(
        receipt_id="7QK2M4XR9TB3WZ5N",
        url=f"{RECEIPT_URL}/7QK2M4XR9TB3WZ5N",
        station="Marktplatz 12, Ladesäule 2, Musterstadt-Nord",
        tariff="time-of-day-with-idle-fee",
        card="Mastercard **** 4444",
        started_at=start.isoformat(),
        ended_at=(start + timedelta(hours=3, minutes=15)).isoformat(),
        energy_wh=48_731,
        bill=bill,
        total=bill.total,
        end_reason="cost_cap",
    )


def all_frames() -> list[Frame]:
    first, every = station_words("en", BERLIN)
    # The long receipt once more with its link code (two more lines of text).
    coded = replace(long_receipt(), link_code="K7Q29MXD")
    return [frames_for(s, first, every) for s in [*example_screens(), long_receipt(), coded]]


@pytest.fixture(scope="module")
def display() -> Iterator[WebDisplay]:
    display = WebDisplay(WebDisplaySettings(port=0))
    yield display
    display.close()


def show(display: WebDisplay, page: Page, frame: Frame) -> None:
    display.show(frame)
    seq = display.snapshot()["seq"]
    page.wait_for_selector(f'body[data-seq="{seq}"]', timeout=WAIT_MS)


def pick(page: Page, language: str) -> None:
    """Tap the language button until the page speaks `language`."""
    for _ in LANGUAGES:
        if page.get_attribute("body", "data-lang") == language:
            return
        page.click("#language")
    assert page.get_attribute("body", "data-lang") == language


@pytest.mark.parametrize("size", SIZES)
def test_every_screen_fits_each_size_in_each_language(
    browser: Browser, display: WebDisplay, artifacts: Path, size: str
) -> None:
    width, height = SIZES[size]
    frames = all_frames()
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(display.url)
        problems: list[str] = []
        for language in LANGUAGES:
            out = artifacts / "kiosk" / size / language
            out.mkdir(parents=True, exist_ok=True)
            for index, frame in enumerate(frames):
                show(display, page, frame)
                pick(page, language)
                view = next(v for v in (frame, *frame.variants) if v.language == language)
                assert page.inner_text("#title") == view.title
                page.screenshot(path=str(out / f"{index:02d}-{frame.name}.png"))
                where = f"{size} {language} {frame.name}"
                problems += [f"{where}: {o}" for o in page.evaluate(OFFENDERS)]
                if frame.name == "receipt":
                    assert view.total is not None
                    assert page.inner_text("#total-label") == view.total[0]
                    assert page.inner_text("#total-value") == view.total[1]
                    assert page.evaluate(TOTAL_ON_TOP), where
                    assert page.is_visible("#qr svg"), where
                    if view.code is not None:
                        assert view.code[1] in page.inner_text("#lines p.code"), where
                if frame.name == "charging":
                    # Large type: the running figures at least 24 px on every screen.
                    px = page.eval_on_selector(
                        "#fields td.value", "e => parseFloat(getComputedStyle(e).fontSize)"
                    )
                    assert px >= 24, f"{where}: {px}px"
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_the_language_button_switches_and_the_session_end_resets_it(
    browser: Browser, display: WebDisplay
) -> None:
    frames = {f.name: f for f in all_frames()}
    page = browser.new_page(viewport={"width": 1024, "height": 600})
    try:
        page.goto(display.url)
        show(display, page, frames["idle"])
        assert page.get_attribute("body", "data-lang") == "en"
        assert page.inner_text("#language-name") == "English"
        page.click("#language")
        assert page.get_attribute("body", "data-lang") == "de"
        assert page.inner_text("#title") == "Willkommen"
        assert page.inner_text("#step-tap") == "Karte auflegen"
        assert "0,3900 EUR pro kWh" not in page.inner_text("#lines")  # shown as 0,39
        assert "0,39 EUR pro kWh" in page.inner_text("#lines")
        for name in ("authorizing", "plug-in", "charging", "receipt"):
            show(display, page, frames[name])
            assert page.get_attribute("body", "data-lang") == "de", name
        assert page.get_attribute("body", "data-step") == "4"
        assert page.locator("#steps li.done").count() == 3
        show(display, page, frames["idle"])  # the session is over: the station's language
        assert page.get_attribute("body", "data-lang") == "en"
        assert page.get_attribute("body", "data-step") == "1"
    finally:
        page.close()
