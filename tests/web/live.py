"""A live gateway (uvicorn on 127.0.0.1, the embedded gateway the demo uses) with operators,
and a browser context at one of the test sizes signed in to its console."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page

from gateway.ledger import now
from gateway.ledger.operators import Operators
from gateway.server import EmbeddedGateway
from gateway.web.mailer import Mailer
from gateway.web.operator_auth import hash_password
from tests.web.browser import SIZES
from tests.web.console_app import PASSWORD, Clock


@contextmanager
def live_gateway(
    data: Path, clock: Clock | None = None, mailer: Mailer | None = None
) -> Iterator[EmbeddedGateway]:
    """`clock` (default: the real one) stamps the ledger's rows and the sessions; `mailer`
    sends the portal's sign-in links."""
    gateway = EmbeddedGateway(data / "gateway.sqlite3", clock=clock or now, mailer=mailer)
    operators = Operators(gateway.engine, gateway.ledger.clock)
    for name, role in (("alice", "admin"), ("reader", "read_only")):
        operators.add(name, hash_password(PASSWORD), role, actor="cli")
    gateway.up()
    try:
        yield gateway
    finally:
        gateway.close()


@contextmanager
def context(browser: Browser, size: str) -> Iterator[BrowserContext]:
    # axe-core is injected as an inline script, which the pages' CSP forbids: the test context
    # lets it in (the pages' own scripts are all from 'self').
    ctx = browser.new_context(viewport=SIZES[size], bypass_csp=True)
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/console")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/**")
