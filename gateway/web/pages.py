"""Server-rendered pages: Jinja2 templates in gateway/web/templates/, one environment.

Every page extends `base.html` (the document, the phone-first style, the language switch) and
fills its blocks (`title`, `content`, and `head` for more style). A template gets the page's
words as `_` (translate a message id: `{{ _("Total") }}`) and `number` (the language's decimal
sign), the page's `language`, and `languages`: the links of the language switch. Autoescape is
on and an undefined name is an error, so a misspelt field fails the page's test rather than
showing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from gateway.web.languages import LANGUAGES, NATIVE_NAMES, page_words

__all__ = ["LanguageLink", "render_page"]

_ENVIRONMENT = Environment(
    loader=PackageLoader("gateway.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


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


def render_page(
    template: str, *, path: str, language: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """`template` rendered in `language` for the page at `path`. The answer says its language
    (Content-Language) and that it depends on the browser's (Vary: Accept-Language)."""
    words = page_words(language)
    html = _ENVIRONMENT.get_template(template).render(
        _=words.text,
        number=words.number,
        language=language,
        languages=language_links(path, language),
        **context,
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Content-Language": language, "Vary": "Accept-Language"},
    )
