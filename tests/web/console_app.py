"""An in-process gateway app for page tests: migrated database (SQLite file or PostgreSQL),
a clock the test moves, operators added as the CLI adds them, and a signed-in HTTPS client
(the session cookies are Secure, so the test client speaks as https://testserver)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.ledger import migrate, open_engine
from gateway.ledger.operators import Operators
from gateway.server import Built, Settings, build
from gateway.web.mailer import Mailer
from gateway.web.operator_auth import hash_password

PASSWORD = "correct horse battery staple"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class ConsoleApp:
    built: Built
    clock: Clock

    @property
    def operators(self) -> Operators:
        return Operators(self.built.engine, self.clock)

    def add(self, username: str, role: str = "admin", totp_secret: str | None = None) -> None:
        assert self.operators.add(
            username, hash_password(PASSWORD), role, actor="cli", totp_secret=totp_secret
        )

    def client(self, address: str = "203.0.113.7") -> TestClient:
        return TestClient(self.built.app, base_url="https://testserver", client=(address, 50000))

    def signed_in(self, username: str, code: str = "", address: str = "203.0.113.7") -> TestClient:
        client = self.client(address)
        response = sign_in(client, username, PASSWORD, code)
        assert response.status_code == 303, response.text
        return client


def console_app(
    db_url: str,
    clock: Clock | None = None,
    mailer: Mailer | None = None,
    key_dirs: tuple[Path, ...] = (),
) -> ConsoleApp:
    engine = open_engine(db_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    clock = clock or Clock()
    settings = Settings(
        db_url=db_url, insecure_dev=True, clock=clock, mailer=mailer, key_dirs=key_dirs
    )
    app = ConsoleApp(build(settings), clock)
    OPEN.append(app)
    return app


OPEN: list[ConsoleApp] = []  # disposed after each test (tests/web/conftest.py)


def dispose_open_apps() -> None:
    """Close the pools of the apps a test built: a PostgreSQL connection left to the garbage
    collector is a ResourceWarning in whatever test runs when it is collected."""
    while OPEN:
        OPEN.pop().built.engine.dispose()


def routes(app: FastAPI, method: str, prefix: str) -> list[str]:
    """The app's paths under `prefix` answering `method`, including routers FastAPI keeps
    nested (`include_router` wraps them since 0.16x)."""
    found: list[str] = []

    def walk(items: list[Any]) -> None:
        for route in items:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(list(inner.routes))
            elif route.path.startswith(prefix) and method in (
                getattr(route, "methods", None) or ()
            ):
                found.append(route.path)

    walk(list(app.routes))
    return found


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str, code: str = "") -> httpx.Response:
    page = client.get("/console/sign-in")
    return client.post(
        "/console/sign-in",
        data={
            "username": username,
            "password": password,
            "code": code,
            "csrf": form_token(page.text),
        },
        follow_redirects=False,
    )
