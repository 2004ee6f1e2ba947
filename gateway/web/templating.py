"""The pages' shared machinery: one Jinja2 environment (autoescaped, templates in
`gateway/web/templates/`), the vendored static files, and the security headers every page
carries. Every page of the gateway (the operator's console, the driver's portal, payment pages)
renders through `Pages.render`, so all of them share `base.html` and the same headers.

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

    def mount_static(self, app: FastAPI) -> None:
        app.mount(STATIC_PATH, StaticFiles(directory=str(STATIC)), name="static")


def page_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**SECURITY_HEADERS, **(extra or {})}
