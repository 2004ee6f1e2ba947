"""Every page, for every kind of viewer (house style 17): each console page renders for an
admin and a read-only operator; every console form that changes something refuses a read-only
operator (403) and any form without the session's CSRF token; every portal page sends a visitor
to sign in and refuses an operator's session (the two kinds of session are apart)."""

from __future__ import annotations

import re

from tests.web.console_app import console_app, form_token, routes
from tests.web.generate import Generator
from tests.web.test_console_tariffs import SIMPLE

READ_ONLY_MAY = {"/console/sign-out"}


def _concrete(path: str, aid: str, tariff_id: str) -> str:
    return path.replace("{aid}", aid).replace("{tariff_id}", tariff_id).replace("{session_id}", aid)


def test_every_console_page_for_each_role(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role="read_only")
    aid = Generator(app.built.payments, app.clock, seed=2).session(app.clock.now, currency="EUR")
    admin = app.signed_in("alice")
    page = admin.get("/console/tariffs").text
    tou = SIMPLE
    admin.post("/console/tariffs", data={"csrf": form_token(page), "ocpi": tou})
    tariff_id = re.search(r'data-tariff="([^"]+)"', admin.get("/console/tariffs").text)
    assert tariff_id is not None
    reader = app.signed_in("reader")
    gets = [p for p in routes(app.built.app, "GET", "/console") if p != "/console/sign-in"]
    assert len(gets) >= 10
    for path in gets:
        if path.endswith("/events"):
            continue  # the event stream never ends; its refusal is in the sign-in tests
        url = _concrete(path, aid, tariff_id.group(1))
        for who, client in (("admin", admin), ("read-only", reader)):
            answer = client.get(url, follow_redirects=False)
            assert answer.status_code in (200, 303), (who, url, answer.status_code)
            if answer.status_code == 303:
                assert url == "/console", url  # the console's root sends to its home page
    token = form_token(reader.get("/console/revenue").text)
    for path in routes(app.built.app, "POST", "/console"):
        if path in READ_ONLY_MAY or path == "/console/sign-in":
            continue
        url = _concrete(path, aid, tariff_id.group(1))
        answer = reader.post(url, data={"csrf": token}, follow_redirects=False)
        assert answer.status_code == 403, (url, answer.status_code)
        assert "read-only" in answer.text
        without = admin.post(url, data={}, follow_redirects=False)
        assert without.status_code == 403, (url, without.status_code)


def test_every_portal_page_needs_a_driver_and_not_an_operator(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    aid = Generator(app.built.payments, app.clock, seed=2).session(app.clock.now, currency="EUR")
    operator = app.signed_in("alice")
    anonymous = app.client()
    gets = [
        p for p in routes(app.built.app, "GET", "/account") if not p.startswith("/account/sign-in")
    ]
    assert len(gets) >= 4
    for path in gets:
        url = path.replace("{session_id}", aid).replace("{invoice_id}", "1")
        for client in (anonymous, operator):
            answer = client.get(url, follow_redirects=False)
            assert answer.status_code == 303, url
            assert answer.headers["location"] == "/account/sign-in"
    for path in routes(app.built.app, "POST", "/account"):
        if path.startswith("/account/sign-in"):
            continue
        assert operator.post(path, data={}, follow_redirects=False).status_code == 403, path
