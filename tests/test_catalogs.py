"""Every string the screens show is in every gettext catalog (terminal/locale/), translated:
the message ids are extracted from the code with Babel, as a translator's tools would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from terminal.core.screens import frame_for
from terminal.core.words import LANGUAGES
from terminal.i18n import Translator, catalog_path
from tests.drivers.screens import example_screens

ROOT = Path(__file__).resolve().parent.parent
# Where screen strings live, and the calls that mark them (gettext's `_` and `N_`, and the
# price lines' `Phrase`).
SOURCES = ("terminal/core/screens.py", "terminal/tariff/display.py", "terminal/core/billing.py")
KEYWORDS = {"_": None, "N_": None, "Phrase": None}


def source_messages() -> set[str]:
    found: set[str] = set()
    for source in SOURCES:
        for _, message, _, _ in extract_from_file("python", str(ROOT / source), KEYWORDS):
            assert isinstance(message, str)
            found.add(message)
    return found


def test_the_screens_mark_their_strings() -> None:
    messages = source_messages()
    # A sample of each kind: a title, a notice, a bill line, a price line, a label.
    assert {"Welcome", "Please tap again", "Limited to the authorized amount"} <= messages
    assert {"{} per kWh", "Idle fee {} per minute", "Tap card"} <= messages
    assert len(messages) > 70


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_screen_string_is_translated_in_each_catalog(language: str) -> None:
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    entries = {m.id: m for m in catalog if m.id}
    messages = source_messages()
    missing = sorted(messages - entries.keys())
    assert not missing, f"{language}: not in the catalog: {missing}"
    stale = sorted(entries.keys() - messages)
    assert not stale, f"{language}: no longer in the code: {stale}"
    for msgid in messages:
        entry = entries[msgid]
        assert isinstance(entry.string, str) and entry.string, f"{language}: {msgid!r} empty"
        assert not entry.fuzzy, f"{language}: {msgid!r} is fuzzy"
        assert entry.string.count("{}") == msgid.count("{}"), f"{language}: {msgid!r}"
        if language == "en":
            assert entry.string == msgid


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_screen_renders_in_the_language(language: str) -> None:
    words = Translator(language, UTC)
    for screen in example_screens():
        english, translated = frame_for(screen), frame_for(screen, words)
        assert translated.language == language
        assert translated.title != english.title or translated.title in {"Total", "Limit"}
        assert len(translated.lines) == len(english.lines)
        assert dict(translated.labels)["step-tap"] != dict(english.labels)["step-tap"]


def test_times_are_the_stations_local_time() -> None:
    from zoneinfo import ZoneInfo

    at = datetime(2026, 1, 20, 18, 5, tzinfo=UTC)  # 19:05 in Berlin
    assert Translator("de", ZoneInfo("Europe/Berlin")).when(at) == "20.01.26, 19:05"
    assert Translator("en", ZoneInfo("Europe/Berlin")).clock(at) == "19:05"
    assert Translator("nl", ZoneInfo("Europe/Amsterdam")).number("4.81 EUR") == "4,81 EUR"
    assert Translator("en", UTC).number("4.81 EUR") == "4.81 EUR"


# The gateway's pages: their own words in gateway/web/locale/, and the words they share with
# the kiosk's screens (the bill's lines, "Total", ...) from the screens' catalogs, never both.
PAGE_SOURCES = ("gateway/web/*.py", "gateway/web/templates/*.html")


def page_messages() -> set[str]:
    from jinja2.ext import babel_extract

    found: set[str] = set()
    for pattern in PAGE_SOURCES:
        paths = sorted(ROOT.glob(pattern))
        assert paths, pattern
        for path in paths:
            method = "python" if path.suffix == ".py" else babel_extract
            for _, message, _, _ in extract_from_file(method, str(path), KEYWORDS):
                if isinstance(message, str):
                    found.add(message)
    return found


def test_the_pages_mark_their_strings() -> None:
    messages = page_messages()
    assert {"Refunded", "Receipt not found", "Language", "Tariff: {}"} <= messages


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_string_is_translated_in_one_catalog(language: str) -> None:
    from gateway.web.languages import CATALOGS as PAGE_CATALOGS

    with catalog_path(language, PAGE_CATALOGS).open("rb") as po:
        pages = {m.id: m for m in read_po(po, locale=language) if m.id}
    with catalog_path(language).open("rb") as po:
        kiosk = {m.id: m for m in read_po(po, locale=language) if m.id}
    messages = page_messages()
    missing = sorted(messages - pages.keys() - kiosk.keys())
    assert not missing, f"{language}: in no catalog: {missing}"
    stale = sorted(pages.keys() - messages)
    assert not stale, f"{language}: no longer in the pages: {stale}"
    twice = sorted(pages.keys() & kiosk.keys())
    assert not twice, f"{language}: in both catalogs (they would drift apart): {twice}"
    for msgid, entry in pages.items():
        assert isinstance(entry.string, str) and entry.string, f"{language}: {msgid!r} empty"
        assert not entry.fuzzy, f"{language}: {msgid!r} is fuzzy"
        assert entry.string.count("{}") == msgid.count("{}"), f"{language}: {msgid!r}"
        if language == "en":
            assert entry.string == msgid
