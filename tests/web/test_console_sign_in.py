"""Operator sign-in: argon2 passwords, TOTP, lock-out, rate limits, CSRF, cookies, sessions,
and the audit log, through the real app over HTTP (both database back-ends)."""

from __future__ import annotations

import hashlib

import pyotp
import pytest
import sqlalchemy as sa

from gateway.ledger.web_schema import operators, web_sessions
from gateway.web.operator_auth import LOCK_AFTER
from tests.web.console_app import PASSWORD, console_app, form_token, routes, sign_in


def test_a_visitor_is_sent_to_sign_in_and_an_admin_gets_in(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.client()
    first = client.get("/console/audit", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/console/sign-in"

    page = client.get("/console/sign-in")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    form_cookie = page.headers["set-cookie"]
    assert form_cookie.startswith("__Host-ev-form=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in form_cookie

    answer = sign_in(client, "alice", PASSWORD)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/revenue"
    session_cookie = answer.headers["set-cookie"]
    assert session_cookie.startswith("__Host-ev-console=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in session_cookie
    # Only the token's hash is stored.
    token = client.cookies["__Host-ev-console"]
    with app.built.engine.connect() as conn:
        stored = conn.execute(sa.select(web_sessions.c.token_sha256)).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]

    audit = client.get("/console/audit")
    assert audit.status_code == 200
    assert "operator.sign_in" in audit.text
    assert "operator.add" in audit.text
    assert "alice (admin)" in audit.text


def test_a_wrong_password_is_refused_and_says_no_more_than_an_unknown_name(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.client()
    wrong = sign_in(client, "alice", "not the password at all")
    unknown = sign_in(client, "mallory", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "__Host-ev-console" not in client.cookies
    message = "The user name, password or code is not right"
    assert message in wrong.text
    assert message in unknown.text


def test_five_failures_lock_the_account_until_the_lock_ends(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.client()
    for _ in range(LOCK_AFTER):
        assert sign_in(client, "alice", "wrong password here").status_code == 401
    # Locked: even the right password is refused, the same way.
    assert sign_in(client, "alice", PASSWORD).status_code == 401
    with app.built.engine.connect() as conn:
        locked = conn.execute(sa.select(operators.c.locked_until)).scalar_one()
    assert locked is not None
    app.clock.advance(minutes=16)
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    actions = [e["action"] for e in app.operators.audit_entries()]
    assert "operator.locked" in actions


def test_totp_is_asked_of_an_operator_who_has_it(db_url: str) -> None:
    app = console_app(db_url)
    secret = pyotp.random_base32()
    app.add("bob", role="read_only", totp_secret=secret)
    client = app.client()
    assert sign_in(client, "bob", PASSWORD).status_code == 401
    assert sign_in(client, "bob", PASSWORD, "000000").status_code in (401, 303)
    code = pyotp.TOTP(secret).at(app.clock.now)
    answer = sign_in(client, "bob", PASSWORD, code)
    assert answer.status_code == 303
    assert "bob (read-only)" in client.get("/console/audit").text


def test_sign_in_without_the_form_token_is_refused(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.client()
    client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"username": "alice", "password": PASSWORD, "code": ""},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "__Host-ev-console" not in client.cookies
    # A token from another visitor's form does not pass either.
    other = app.client().get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"username": "alice", "password": PASSWORD, "csrf": form_token(other.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 403


@pytest.mark.parametrize("address", ["198.51.100.9"])
def test_sign_in_is_rate_limited(db_url: str, address: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.client(address)
    statuses = [sign_in(client, f"guess{i}", "wrong password here").status_code for i in range(20)]
    assert set(statuses) == {401}
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    assert "Too many sign-in attempts" in sign_in(client, "alice", PASSWORD).text
    # Another address is not held up, and the window ends.
    assert sign_in(app.client("192.0.2.44"), "alice", PASSWORD).status_code == 303
    app.clock.advance(minutes=20)
    assert sign_in(client, "alice", PASSWORD).status_code == 303


def test_sign_out_needs_the_session_token_and_ends_the_session(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.signed_in("alice")
    assert client.post("/console/sign-out", data={}, follow_redirects=False).status_code == 403
    assert client.get("/console/audit", follow_redirects=False).status_code == 200
    token = form_token(client.get("/console/audit").text)
    out = client.post("/console/sign-out", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/console/audit", follow_redirects=False).status_code == 303
    with app.built.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar() == 0


def test_a_session_ends_after_its_lifetime(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    client = app.signed_in("alice")
    app.clock.advance(hours=7, minutes=59)
    assert client.get("/console/audit", follow_redirects=False).status_code == 200
    app.clock.advance(minutes=2)
    assert client.get("/console/audit", follow_redirects=False).status_code == 303


def test_every_console_page_needs_a_signed_in_operator(db_url: str) -> None:
    app = console_app(db_url)
    client = app.client()
    pages = [p for p in routes(app.built.app, "GET", "/console") if p != "/console/sign-in"]
    assert "/console/audit" in pages

    def concrete(path: str) -> str:  # an id of the right shape in each path parameter
        return path.replace("{aid}", "auth-0000000001").replace("{tariff_id}", "standard")

    for path in map(concrete, pages):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/console/sign-in"
    posts = [p for p in routes(app.built.app, "POST", "/console") if p != "/console/sign-in"]
    assert "/console/sign-out" in posts
    for path in map(concrete, posts):
        assert client.post(path, data={}, follow_redirects=False).status_code == 403, path
