"""The driver's portal over HTTP (both back-ends), with sign-in links sent through a local SMTP
server (aiosmtpd): a link works once and for 15 minutes; a card is linked only with its
receipt id, last 4 digits and amount; a driver sees only the sessions of their own cards and
tokens (another's id is 404, like a missing one); RFID tokens are named, blocked and
unblocked, and a block reaches the kiosks' deny list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.web.console_app import ConsoleApp, console_app, form_token
from tests.web.generate import Generator
from tests.web.mail_sink import Sink, mail_sink


@pytest.fixture
def portal(db_url: str) -> Iterator[tuple[ConsoleApp, Sink, Generator]]:
    with mail_sink() as (sink, mailer):
        app = console_app(db_url, mailer=mailer)
        yield app, sink, Generator(app.built.payments, app.clock, seed=11)


def ask_link(
    app: ConsoleApp, sink: Sink, address: str, client: TestClient | None = None
) -> tuple[TestClient, str]:
    client = client or app.client()
    page = client.get("/account/sign-in")
    sent = client.post("/account/sign-in", data={"email": address, "csrf": form_token(page.text)})
    assert sent.status_code == 200, sent.text
    assert "a sign-in link is on its way" in sent.text
    return client, sink.link(address).replace("http://testserver", "").replace(
        "https://testserver", ""
    )


def signed_in_driver(app: ConsoleApp, sink: Sink, address: str) -> TestClient:
    client, link = ask_link(app, sink, address)
    confirm = client.get(link)
    used = client.post(link, data={"csrf": form_token(confirm.text)}, follow_redirects=False)
    assert used.status_code == 303, used.text
    assert used.headers["location"] == "/account"
    return client


def link_card(client: TestClient, receipt_id: str, last4: str, amount: str) -> Any:
    page = client.get("/account/cards").text
    return client.post(
        "/account/cards",
        data={"csrf": form_token(page), "receipt_id": receipt_id, "last4": last4, "amount": amount},
        follow_redirects=False,
    )


def test_a_sign_in_link_works_once_and_not_after_15_minutes(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, _gen = portal
    client, link = ask_link(app, sink, "dana@example.org")
    assert client.get("/account", follow_redirects=False).status_code == 303
    confirm = client.get(link)
    assert confirm.status_code == 200  # opening the link signs nobody in
    assert client.get("/account", follow_redirects=False).status_code == 303
    token = form_token(confirm.text)
    assert client.post(link, data={}, follow_redirects=False).status_code == 403  # no CSRF token
    assert client.post(link, data={"csrf": token}, follow_redirects=False).status_code == 303
    assert client.get("/account").status_code == 200
    again = app.client()
    page = again.get(link)
    assert again.post(link, data={"csrf": form_token(page.text)}).status_code == 400
    late_client, late = ask_link(app, sink, "erin@example.org")
    app.clock.advance(minutes=16)
    page = late_client.get(late)
    assert late_client.post(late, data={"csrf": form_token(page.text)}).status_code == 400


def test_link_requests_are_limited_and_say_nothing_about_accounts(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, _gen = portal
    client = app.client()
    for _ in range(5):
        ask_link(app, sink, "frank@example.org", client)
    page = client.get("/account/sign-in")
    sixth = client.post(
        "/account/sign-in", data={"email": "frank@example.org", "csrf": form_token(page.text)}
    )
    assert sixth.status_code == 429
    bad = client.post(
        "/account/sign-in", data={"email": "not an address", "csrf": form_token(page.text)}
    )
    assert bad.status_code == 400
    assert len(sink.messages) == 5


def test_a_driver_links_a_card_by_proof_and_sees_only_their_own_sessions(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    now = app.clock.now
    mine = gen.session(now, currency="EUR", token="tok-card-of-dana-01")
    mine_again = gen.session(now, currency="EUR", token="tok-card-of-dana-01")
    mine_done = [d for d in gen.done if d.kind == "capture"]
    theirs = gen.session(now, currency="EUR", token="tok-card-of-erin-01")
    theirs_done = gen.done[-1]
    dana = signed_in_driver(app, sink, "dana@example.org")
    erin = signed_in_driver(app, sink, "erin@example.org")
    first = mine_done[0]
    amount = f"{first.amount / 100:.2f}"
    last4 = app.built.ledger.fetch(mine).card_last4  # type: ignore[union-attr]
    # Any wrong part of the proof links nothing and says the same.
    for receipt_id, digits, paid in (
        (first.receipt_id, "9999", amount),
        (first.receipt_id, last4, "0.01"),
        ("NOSUCHRECEIPT", last4, amount),
        (first.receipt_id, "", amount),  # a payment card needs its digits
    ):
        answer = link_card(dana, receipt_id, digits, paid)
        assert answer.status_code == 400
        assert "No payment matches these details." in answer.text
    assert link_card(dana, first.receipt_id, last4, amount).status_code == 303
    # Erin knows the receipt too (she found it): the card is Dana's already.
    assert link_card(erin, first.receipt_id, last4, amount).status_code == 409
    their_last4 = app.built.ledger.fetch(theirs).card_last4  # type: ignore[union-attr]
    assert (
        link_card(
            erin, theirs_done.receipt_id, their_last4, f"{theirs_done.amount / 100:.2f}"
        ).status_code
        == 303
    )

    history = dana.get("/account").text
    assert f'data-session="{mine}"' in history
    assert f'data-session="{mine_again}"' in history  # every session of the linked card
    assert theirs not in history
    total = sum(d.amount for d in mine_done)
    assert re.search(
        rf"2 session\(s\), paid <strong>{total // 100}\.{total % 100:02d} EUR", history
    )
    assert dana.get(f"/account/sessions/{mine}").status_code == 200
    # Another driver's session by changing the id: the same 404 as an id that does not exist.
    other = dana.get(f"/account/sessions/{theirs}")
    missing = dana.get("/account/sessions/gen-11-999999")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert erin.get(f"/account/sessions/{mine}").status_code == 404
    exported = dana.get("/account/sessions.csv")
    assert mine in exported.text
    assert theirs not in exported.text
    assert app.client().get(f"/account/sessions/{mine}", follow_redirects=False).status_code == 303


def test_card_proofs_are_rate_limited(portal: tuple[ConsoleApp, Sink, Generator]) -> None:
    app, sink, gen = portal
    gen.session(app.clock.now, currency="EUR")
    dana = signed_in_driver(app, sink, "dana@example.org")
    statuses = [link_card(dana, "GUESS000001", "1234", "1.00").status_code for _ in range(11)]
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429


def test_a_driver_names_blocks_and_unblocks_an_rfid_token(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    gen.session(app.clock.now, currency="EUR", kind="id_token", token="tok-rfid-of-dana", last4="")
    done = gen.done[-1]
    dana = signed_in_driver(app, sink, "dana@example.org")
    # The kiosk reads an RFID token's UID only (no digits): receipt and amount are the proof.
    assert link_card(dana, done.receipt_id, "1234", f"{done.amount / 100:.2f}").status_code == 400
    assert link_card(dana, done.receipt_id, "", f"{done.amount / 100:.2f}").status_code == 303

    def act(action: str, label: str = "") -> int:
        page = dana.get("/account/cards").text
        data = {
            "csrf": form_token(page),
            "token": "tok-rfid-of-dana",
            "action": action,
            "label": label,
        }
        return dana.post("/account/cards/token", data=data, follow_redirects=False).status_code

    assert act("rename", "Blue key fob") == 303
    assert 'data-card="Blue key fob"' in dana.get("/account/cards").text
    assert act("block") == 303
    assert app.client().get("/v1/terminal-config").json()["deny_list"] == ["tok-rfid-of-dana"]
    assert "blocked" in dana.get("/account/cards").text
    assert act("unblock") == 303
    assert app.client().get("/v1/terminal-config").json()["deny_list"] == []
    # A block the operator made is not the driver's to lift.
    app.add("alice")
    admin = app.signed_in("alice")
    page = admin.get("/console/tokens").text
    admin.post(
        "/console/tokens",
        data={"csrf": form_token(page), "token": "tok-rfid-of-dana", "to": "deny"},
    )
    assert act("unblock") == 409
    assert app.client().get("/v1/terminal-config").json()["deny_list"] == ["tok-rfid-of-dana"]
    # Someone else's token, or a made-up one, is not found.
    erin = signed_in_driver(app, sink, "erin@example.org")
    page = erin.get("/account/cards").text
    answer = erin.post(
        "/account/cards/token",
        data={"csrf": form_token(page), "token": "tok-rfid-of-dana", "action": "unblock"},
    )
    assert answer.status_code == 404
    actors = {e["actor"] for e in app.operators.audit_entries() if e["action"] == "token.list"}
    assert actors == {"driver:1", "alice"}
