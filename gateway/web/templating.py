"""The pages' shared machinery: one Jinja2 environment (autoescaped, an undefined name is an
error, templates in `gateway/web/templates/`), the vendored static files, and the security
headers every page carries. The console and the portal render through `Pages.render` (their
templates extend `page.html`); the driver's public pages (the receipt) through
`Pages.render_page`, in the driver's language (they extend `base.html`, which has the language
switch): the template gets the page's words as `_` (`{{ _("Total") }}`), `number` (the
language's decimal sign), `language`, and `languages` (the switch's links).

The static files are served as they are in the repository: htmx and uPlot are vendored and
pinned in `static/vendor/` (their versions in the file names, their licences beside them); there
is no front-end build step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from gateway.web.languages import language_links, page_words
from terminal.core.words import Words
from terminal.money import Money

WEB = Path(__file__).resolve().parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
STATIC_PATH = "/static"

# Scripts and styles only from our own origin, no inline script, no framing; forms post only
# to us. htmx's inline indicator styles are switched off in base.html for this reason.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def money(minor: int, currency: str) -> str:
    """An amount for a page: `Money.format` (integer minor units, never a float)."""
    return Money(int(minor), currency).format()


class Pages:
    """Renders the gateway's pages. One instance per app (no module-level state)."""

    def __init__(self, templates: Path = TEMPLATES) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(templates)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = money
        self.env.globals["static"] = STATIC_PATH

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=page_headers(headers))

    def render_page(
        self,
        name: str,
        *,
        path: str,
        language: str,
        words: Words | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """`name` rendered in `language` for the page at `path` (`words`: the language's words
        with a time zone of the page's own; default UTC). The answer says its language
        (Content-Language) and that it depends on the browser's (Vary: Accept-Language)."""
        words = words or page_words(language)
        return self.render(
            name,
            {
                "_": words.text,
                "number": words.number,
                "language": language,
                "languages": language_links(path, language),
                **context,
            },
            status_code=status_code,
            headers={"Content-Language": language, "Vary": "Accept-Language"},
        )

    def mount_static(self, app: FastAPI) -> None:
        app.mount(STATIC_PATH, StaticFiles(directory=str(STATIC)), name="static")


def page_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}
