"""Words on the screen: what the core says, and the port it says it through.

The core composes screens in English message ids (gettext's `msgid`) and never reads a
catalog: `frame_for` takes a `Words` and asks it for every string, so the same screen renders
in any language the shell loaded (`terminal.i18n` reads the gettext catalogs with Babel).
`Phrase` is a sentence with its values, kept as data until it is rendered: the idle screen's
price lines travel as phrases so the language button can switch them too.

Message ids use `{}` placeholders (str.format); values that are numbers are written with a
"." decimal point and `Words.number` puts in the language's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

__all__ = ["ENGLISH", "LANGUAGES", "NATIVE_NAMES", "N_", "English", "Phrase", "Words", "render"]

# The languages the screens speak (a catalog each in terminal/locale/), and each one's name
# in itself, for the language button.
LANGUAGES = ("en", "de", "fr", "nl")
NATIVE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "nl": "Nederlands"}

_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")


@dataclass(frozen=True, slots=True)
class Phrase:
    """A sentence to show: a message id with `{}` placeholders and the values for them."""

    msgid: str
    args: tuple[str, ...] = ()


class Words(Protocol):
    """A language for the screens. `text` translates a message id; the rest format values."""

    @property
    def language(self) -> str:
        """ISO 639-1 code of the language ("en", "de", ...)."""
        ...

    def text(self, msgid: str) -> str:
        """The translation of `msgid` (the msgid itself when there is none)."""
        ...

    def number(self, text: str) -> str:
        """`text` with every decimal point between digits in the language's own form."""
        ...

    def when(self, at: datetime) -> str:
        """A date and time of day, in the station's local time."""
        ...

    def clock(self, at: datetime) -> str:
        """A time of day, in the station's local time."""
        ...


def N_(msgid: str) -> str:
    """Mark a message id for the catalogs where it is stored, to be translated when shown
    (gettext's `N_`)."""
    return msgid


def render(words: Words, phrase: Phrase) -> str:
    """A phrase in the language of `words`: its message translated, its values localized."""
    return words.text(phrase.msgid).format(*(words.number(arg) for arg in phrase.args))


@dataclass(frozen=True, slots=True)
class English:
    """The message ids as they are, times in `tz` (ISO-like, 24 h): what the core falls back
    to, and what scripts and the LCD tests read."""

    tz: tzinfo = UTC
    language: str = "en"

    def text(self, msgid: str) -> str:
        return msgid

    def number(self, text: str) -> str:
        return text

    def when(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def clock(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%H:%M")


ENGLISH: Words = English()


def decimal_comma(text: str) -> str:
    """`text` with a decimal comma in place of every decimal point between digits."""
    return _DECIMAL_POINT.sub(",", text)
