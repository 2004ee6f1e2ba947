"""The kiosk web page in real headless Chromium: every screen renders, updates arrive live over
server-sent events, the receipt carries its QR code, text is never taken as markup.
A screenshot of each screen is saved under test-artifacts/display-web/."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from drivers.display_web import WebDisplay, WebDisplaySettings, qr_svg
from hardware.ports import Frame, Tone
from terminal.core import screens
from terminal.core.screens import frames_for
from terminal.i18n import station_words
from tests.drivers.kiosk_browser import KIOSK_VIEWPORT
from tests.drivers.screens import RECEIPT_URL, example_frames

pytestmark = pytest.mark.timeout(60)

WAIT_MS = 5_000


@pytest.fixture
def display() -> Iterator[WebDisplay]:
    display = WebDisplay(WebDisplaySettings(port=0))
    yield display
    display.close()


@pytest.fixture
def page(browser: Browser, display: WebDisplay) -> Iterator[Page]:
    page = browser.new_page(viewport=KIOSK_VIEWPORT)
    page.goto(display.url)
    page.wait_for_selector('body[data-screen="starting"]', timeout=WAIT_MS)
    yield page
    page.close()


def show_and_wait(display: WebDisplay, page: Page, frame: Frame) -> None:
    display.show(frame)
    seq = display.snapshot()["seq"]
    page.wait_for_selector(f'body[data-seq="{seq}"]', timeout=WAIT_MS)


def test_every_screen_renders_live_with_a_screenshot(
    display: WebDisplay, page: Page, artifacts: Path
) -> None:
    out = artifacts / "display-web"
    out.mkdir(exist_ok=True)
    for frame in example_frames():
        show_and_wait(display, page, frame)
        assert page.get_attribute("body", "data-screen") == frame.name
        assert page.get_attribute("body", "data-tone") == frame.tone.value
        assert page.inner_text("#title") == frame.title
        for line in frame.lines:
            assert line in page.inner_text("#lines")
        for label, value in frame.fields:
            assert page.inner_text(f'#fields tr:has(td:text-is("{label}")) td.value') == value
        page.screenshot(path=str(out / f"{frame.name}.png"))


def test_charging_shows_energy_cost_and_time(display: WebDisplay, page: Page) -> None:
    charging = next(f for f in example_frames() if f.name == "charging")
    show_and_wait(display, page, charging)
    text = page.inner_text("#fields")
    assert "12.34 kWh" in text
    assert "4.81 EUR" in text
    assert "1:07:01" in text


def test_the_receipt_shows_a_qr_code_of_its_link(display: WebDisplay, page: Page) -> None:
    receipt = next(f for f in example_frames() if f.name == "receipt")
    show_and_wait(display, page, receipt)
    assert page.is_visible("#qr svg")
    assert page.inner_text("#qr-url") == RECEIPT_URL
    box = page.locator("#qr svg").bounding_box()
    assert box is not None and box["width"] > 100
    show_and_wait(display, page, example_frames()[0])
    assert not page.is_visible("#qr")


def test_text_is_shown_as_text_never_as_markup(display: WebDisplay, page: Page) -> None:
    hostile = Frame(
        name="idle",
        title="<img src=x onerror=\"document.body.dataset.pwned='1'\">",
        lines=("<b>bold</b>",),
        fields=(("<i>label</i>", "<script>1</script>"),),
        tone=Tone.ERROR,
    )
    show_and_wait(display, page, hostile)
    assert page.inner_text("#title") == hostile.title
    assert page.inner_text("#lines") == "<b>bold</b>"
    assert page.locator("#lines b").count() == 0
    assert page.get_attribute("body", "data-pwned") is None


def test_the_page_reconnects_after_the_daemon_restarts(browser: Browser) -> None:
    first = WebDisplay(WebDisplaySettings(port=0))
    port = first.port
    page = browser.new_page(viewport=KIOSK_VIEWPORT)
    try:
        page.goto(first.url)
        page.wait_for_selector('body[data-screen="starting"]', timeout=WAIT_MS)
        first.close()
        second = WebDisplay(WebDisplaySettings(port=port))
        try:
            second.show(example_frames()[0])
            # EventSource retries on its own, after the `retry:` the stream set.
            page.wait_for_selector('body[data-screen="idle"]', timeout=10_000)
        finally:
            second.close()
    finally:
        page.close()


def test_event_stream_sends_the_current_frame_at_once(display: WebDisplay) -> None:
    display.show(example_frames()[0])
    conn = http.client.HTTPConnection("127.0.0.1", display.port, timeout=5)
    try:
        conn.request("GET", "/events")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.readline() == b"retry: 500\n"
        assert response.readline() == b"\n"
        assert response.readline() == b"event: frame\n"
        data = response.readline()
        assert data.startswith(b"data: ")
        assert json.loads(data[6:])["name"] == "idle"
    finally:
        conn.close()


def test_frame_route_and_unknown_paths(display: WebDisplay) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", display.port, timeout=5)
    try:
        conn.request("GET", "/frame")
        assert json.loads(conn.getresponse().read())["name"] == "starting"
        conn.request("GET", "/nothing")
        response = conn.getresponse()
        response.read()
        assert response.status == 404
    finally:
        conn.close()


def test_qr_svg_is_a_standalone_svg() -> None:
    svg = qr_svg(RECEIPT_URL)
    assert svg.startswith("<svg")
    assert "<path" in svg


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        ("0.0.0.0", 8090, "hardware.display.host"),
        ("192.168.1.10", 8090, "hardware.display.host"),
        ("kiosk.example", 8090, "hardware.display.host"),
        ("127.0.0.1", 70_000, "hardware.display.port"),
    ],
)
def test_settings_name_the_key(host: str, port: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebDisplaySettings(host=host, port=port)


def test_close_ends_open_streams(display: WebDisplay) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", display.port, timeout=5)
    conn.request("GET", "/events")
    response = conn.getresponse()
    response.readline()
    display.close()
    assert response.read() is not None  # the stream ends instead of hanging
    conn.close()


def test_the_page_before_the_first_frame_speaks_the_stations_language(browser: Browser) -> None:
    """The composition root renders the starting frame (drivers cannot read the catalogs);
    the page shows it at once, and its language button offers the others."""
    first, every = station_words("nl", UTC)
    display = WebDisplay(
        WebDisplaySettings(port=0), starting=frames_for(screens.Starting(), first, every)
    )
    page = browser.new_page(viewport=KIOSK_VIEWPORT)
    try:
        page.goto(display.url)
        page.wait_for_selector('body[data-screen="starting"]', timeout=WAIT_MS)
        assert page.get_attribute("body", "data-lang") == "nl"
        assert page.inner_text("#title") == "Opstarten"
        assert page.inner_text("#lines") == "Even geduld..."
        page.click("#language")
        assert page.inner_text("#title") != "Opstarten"
    finally:
        page.close()
        display.close()
