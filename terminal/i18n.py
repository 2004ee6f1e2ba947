"""The screens' languages: gettext catalogs read with Babel, as `terminal.core.words.Words`.

The catalogs are the `.po` files in terminal/locale/<language>/LC_MESSAGES/messages.po, one
per language in `terminal.core.words.LANGUAGES`: read at start-up with Babel's `read_po` and
compiled in memory (`write_mo` into a `gettext.GNUTranslations`), so there is no build step
and a translator edits one text file. A message a catalog lacks shows in English (gettext's
fallback); a test checks that none lacks any. Numbers take the language's decimal sign and
times its date and time format (Babel's CLDR data), in the station's zone.

To add a message: wrap it in `_()` or `N_()` in terminal/core/screens.py (or in `Phrase()` or
`N_()` in terminal/tariff/display.py), then add it to every catalog (tests/test_catalogs.py
names what is missing).
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from terminal.core.words import LANGUAGES, Words, decimal_comma

__all__ = ["CATALOGS", "Translator", "catalog_path", "station_words"]

CATALOGS = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
# The CLDR locale whose date and time format each language shows (a European kiosk: en_GB
# writes 30/11/2026 19:05, not 11/30/26 7:05 PM).
_FORMATS = {"en": "en_GB", "de": "de_DE", "fr": "fr_FR", "nl": "nl_NL"}


def catalog_path(language: str, base: Path = CATALOGS) -> Path:
    """The `.po` file of `language` under a catalog directory (the screens' by default)."""
    return base / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _compile(path: Path, language: str) -> gettext.GNUTranslations:
    """One `.po` file as gettext translations, compiled in memory."""
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@cache
def _translations(language: str, extra: tuple[Path, ...] = ()) -> gettext.NullTranslations:
    """The catalogs of `language` as one gettext chain (compiled once, in memory): those in
    the `extra` directories first, in order, then the screens' own."""
    first = _compile(catalog_path(language), language)
    # Each link is compiled here, for this chain only: add_fallback links objects in place.
    for base in reversed(extra):
        link = _compile(catalog_path(language, base), language)
        link.add_fallback(first)
        first = link
    return first


@dataclass(frozen=True, slots=True)
class Translator:
    """`Words` in one language, for a station in zone `tz`. `catalogs` names more catalog
    directories (laid out as terminal/locale/) consulted before the screens' own: a page that
    shows a bill as the kiosk does keeps its own words there and borrows the screens' (the
    gateway's receipt page, gateway/web/locale/)."""

    language: str
    tz: tzinfo
    catalogs: tuple[Path, ...] = ()
    _gettext: gettext.NullTranslations = field(init=False, repr=False, compare=False)
    _comma: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"no catalog for {self.language!r}; have {', '.join(LANGUAGES)}")
        object.__setattr__(self, "_gettext", _translations(self.language, self.catalogs))
        decimal = Locale.parse(_FORMATS[self.language]).number_symbols["latn"]["decimal"]
        object.__setattr__(self, "_comma", decimal == ",")

    def text(self, msgid: str) -> str:
        return self._gettext.gettext(msgid)

    def number(self, text: str) -> str:
        return decimal_comma(text) if self._comma else text

    def when(self, at: datetime) -> str:
        return str(format_datetime(at, "short", tzinfo=self.tz, locale=_FORMATS[self.language]))

    def clock(self, at: datetime) -> str:
        return str(format_time(at, "short", tzinfo=self.tz, locale=_FORMATS[self.language]))


def station_words(language: str, tz: tzinfo) -> tuple[Words, tuple[Words, ...]]:
    """The station's own language first, and every language the screens offer."""
    first = Translator(language, tz)
    return first, tuple(
        first if other == language else Translator(other, tz) for other in LANGUAGES
    )
