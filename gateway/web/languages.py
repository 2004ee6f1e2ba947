"""The language of a page: the driver's choice (`?lang=`), else their browser's
(Accept-Language, RFC 9110 section 12.5.4), else English; and the words to say it in.

The pages speak the kiosk's languages (`terminal.core.words.LANGUAGES`) through the same
gettext catalogs, read with Babel by `terminal.i18n`: the pages' own words are in
gateway/web/locale/<language>/LC_MESSAGES/messages.po and the words they share with the kiosk
(the bill's lines, "Total", ...) come from the kiosk's catalogs, so a receipt reads the same on
the screen and on the phone. tests/test_catalogs.py checks both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from urllib.parse import urlencode

from terminal.core.words import LANGUAGES, NATIVE_NAMES, Words
from terminal.i18n import Translator

__all__ = [
    "CATALOGS",
    "DEFAULT",
    "LANGUAGES",
    "NATIVE_NAMES",
    "LanguageLink",
    "language_links",
    "negotiate",
    "page_words",
]

CATALOGS = Path(__file__).resolve().parent / "locale"
DEFAULT = "en"


def negotiate(chosen: str | None, accept_language: str | None) -> str:
    """The page's language: `chosen` when the pages speak it, else the first of the browser's
    preferences (by quality, then order) the pages speak, else English. A tag matches by its
    primary language ("de-AT" is German); anything malformed is passed over, never an error."""
    if chosen in LANGUAGES:
        return chosen
    preferences: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "").split(",")):
        tag, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.split("-", 1)[0].lower()
        if quality > 0 and primary in LANGUAGES:
            preferences.append((-quality, index, primary))
    return min(preferences)[2] if preferences else DEFAULT


def page_words(language: str, zone: tzinfo = UTC) -> Words:
    """The words of a page in `language`, times in `zone` (a station's, where the page is
    about one)."""
    return Translator(language, zone, catalogs=(CATALOGS,))


@dataclass(frozen=True, slots=True)
class LanguageLink:
    """One entry of the language switch: the language, its name in itself, the page's URL in
    it, and whether it is the page's own."""

    language: str
    name: str
    href: str
    current: bool


def language_links(path: str, language: str) -> tuple[LanguageLink, ...]:
    return tuple(
        LanguageLink(
            language=other,
            name=NATIVE_NAMES[other],
            href=f"{path}?{urlencode({'lang': other})}",
            current=other == language,
        )
        for other in LANGUAGES
    )
