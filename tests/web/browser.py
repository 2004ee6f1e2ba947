"""The pages in a real browser: Debian's Chromium through Playwright, at a phone size and a
desktop size. `look` keeps a screenshot of the page (test-artifacts/web/, kept by CI, ignored
by git), checks that the main content fits the viewport's width, and runs axe-core: no serious
or critical violation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.drivers.kiosk_browser import ARTIFACTS
from tests.web.axe import axe_script

SIZES: dict[str, Any] = {
    "phone": {"width": 390, "height": 844},
    "desktop": {"width": 1280, "height": 800},
}
SHOTS = ARTIFACTS / "web"


def look(page: Page, name: str, size: str) -> None:
    """Screenshot, width and accessibility checks of the page as it is now."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True)
    widths = page.evaluate(
        """() => ({
            viewport: window.innerWidth,
            document: document.documentElement.scrollWidth,
            main: document.querySelector('main').scrollWidth,
            right: Math.max(...[...document.querySelectorAll('main *')]
                .map(e => e.getBoundingClientRect().right)),
            widest: [...document.querySelectorAll('main *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                .slice(0, 3).map(e => e.tagName + '.' + e.className),
        })"""
    )
    assert widths["document"] <= widths["viewport"], (name, size, widths)
    assert widths["main"] <= widths["viewport"], (name, size, widths)
    assert widths["right"] <= widths["viewport"] + 0.5, (name, size, widths)
    violations = axe(page)
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], (name, size, json.dumps(serious, indent=1)[:4000])


def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page (WCAG 2.x A and AA rules and best practices)."""
    page.add_script_tag(content=Path(axe_script()).read_text())
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return list(result["violations"])
