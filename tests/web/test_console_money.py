"""The console's money pages: refunds (admins only, CSRF, a reason, once per form, never more
than is left), open holds and unknown outcomes, a reconciliation round, and the fleet page;
through the real app on both back-ends."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway import wire
from gateway.ledger.web_schema import READ_ONLY
from gateway.payments.answers import Unanswered
from tests.web.console_app import ConsoleApp, console_app, form_token
from tests.web.generate import Generator, _store


@pytest.fixture
def shop(db_url: str) -> tuple[ConsoleApp, Generator, str]:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role=READ_ONLY)
    gen = Generator(app.built.payments, app.clock, seed=5)
    aid = gen.session(app.clock.now, currency="EUR")
    app.clock.advance(minutes=5)
    return app, gen, aid


def _refund_form(client: Any, aid: str) -> dict[str, str]:
    page = client.get(f"/console/payments/{aid}").text
    key = re.search(r'name="key" value="([^"]+)"', page)
    assert key is not None, "no refund form"
    return {"csrf": form_token(page), "key": key.group(1)}


def _refunds(app: ConsoleApp, aid: str) -> list[int]:
    return [
        m["amount"]
        for m in app.built.ledger.all_movements()
        if m["authorization_id"] == aid and m["kind"] == "refund"
    ]


def test_an_admin_refunds_part_with_a_reason_once_per_form(
    shop: tuple[ConsoleApp, Generator, str],
) -> None:
    app, gen, aid = shop
    captured = gen.done[-1].amount
    client = app.signed_in("alice")
    form = _refund_form(client, aid)
    data = {**form, "amount": "1.00", "reason": "charger stopped early"}
    first = client.post(f"/console/payments/{aid}/refunds", data=data, follow_redirects=False)
    assert first.status_code == 303, first.text
    # The same form again (a double click, a reload): the same key, refunded once.
    again = client.post(f"/console/payments/{aid}/refunds", data=data, follow_redirects=False)
    assert again.status_code == 303
    assert _refunds(app, aid) == [100]
    page = client.get(first.headers["location"]).text
    assert "Refunded 1.00 EUR." in page
    entry = next(e for e in app.operators.audit_entries() if e["action"] == "payment.refund")
    assert entry["actor"] == "alice"
    assert entry["target"] == aid
    assert entry["detail"]["reason"] == "charger stopped early"
    assert entry["detail"]["amount"] == 100
    # The rest, on a new form: the whole capture is refunded, and no more can be.
    rest = f"{(captured - 100) / 100:.2f}"
    form = _refund_form(client, aid)
    full = client.post(
        f"/console/payments/{aid}/refunds",
        data={**form, "amount": rest, "reason": "goodwill"},
        follow_redirects=False,
    )
    assert full.status_code == 303
    assert sum(_refunds(app, aid)) == captured
    assert 'name="key"' not in client.get(f"/console/payments/{aid}").text


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("abc", "not an amount"),
        ("0", "more than zero"),
        ("-1", "more than zero"),
        ("1.234", "2 decimals"),
        ("100000", "left to refund"),
        ("NaN", "more than zero"),
    ],
)
def test_a_bad_refund_amount_is_refused_and_changes_nothing(
    shop: tuple[ConsoleApp, Generator, str], amount: str, says: str
) -> None:
    app, _gen, aid = shop
    client = app.signed_in("alice")
    form = _refund_form(client, aid)
    answer = client.post(
        f"/console/payments/{aid}/refunds", data={**form, "amount": amount, "reason": "x"}
    )
    assert answer.status_code == 400
    assert says in answer.text
    assert _refunds(app, aid) == []


def test_a_refund_needs_a_reason_and_the_form_token(
    shop: tuple[ConsoleApp, Generator, str],
) -> None:
    app, _gen, aid = shop
    client = app.signed_in("alice")
    form = _refund_form(client, aid)
    no_reason = client.post(
        f"/console/payments/{aid}/refunds", data={**form, "amount": "1", "reason": "  "}
    )
    assert no_reason.status_code == 400
    no_csrf = client.post(
        f"/console/payments/{aid}/refunds",
        data={"key": form["key"], "amount": "1", "reason": "fault"},
    )
    assert no_csrf.status_code == 403
    forged = client.post(
        f"/console/payments/{aid}/refunds",
        data={**form, "csrf": "x" * 43, "amount": "1", "reason": "fault"},
    )
    assert forged.status_code == 403
    assert _refunds(app, aid) == []


def test_a_read_only_operator_sees_a_payment_but_cannot_refund(
    shop: tuple[ConsoleApp, Generator, str],
) -> None:
    app, _gen, aid = shop
    client = app.signed_in("reader")
    page = client.get(f"/console/payments/{aid}")
    assert page.status_code == 200
    assert "A read-only operator cannot refund." in page.text
    assert 'name="key"' not in page.text
    answer = client.post(
        f"/console/payments/{aid}/refunds",
        data={"csrf": form_token(page.text), "key": "k" * 32, "amount": "1", "reason": "x"},
    )
    assert answer.status_code == 403
    assert "read-only" in answer.text
    assert _refunds(app, aid) == []
    assert (
        client.post("/console/money/reconcile", data={"csrf": form_token(page.text)}).status_code
        == 403
    )


def test_the_money_page_shows_open_holds_and_unknown_outcomes(
    shop: tuple[ConsoleApp, Generator, str],
) -> None:
    app, _gen, _aid = shop
    payments = app.built.payments
    held = wire.AuthorizationRequest(
        authorization_id="open-hold-0001",
        terminal_id="KIOSK-0003",
        amount=wire.Amount(minor=5000, currency="EUR"),
        card=wire.CardIn(kind="payment", token="tok-open-hold", brand="Visa", last4="4242"),
    )
    assert payments.authorize(held, _store).body["status"] == "approved"
    # A hold whose answer is lost (the simulated processor's test card 0135).
    lost = wire.AuthorizationRequest(
        authorization_id="lost-hold-0001",
        terminal_id="KIOSK-0004",
        amount=wire.Amount(minor=5000, currency="EUR"),
        card=wire.CardIn(kind="payment", token="tok-lost-hold", brand="Visa", last4="0135"),
    )
    with pytest.raises(Unanswered):  # the step stays unknown (the request answers 504)
        payments.authorize(lost, _store)
    ledger = app.built.ledger

    def reading(tx: str, kwh: str) -> str:
        payload = f'{{"GS":"KIOSK-0003","RD":[{{"TX":"{tx}","RV":{kwh},"RU":"kWh"}}]}}'
        return f'OCMF|{payload}|{{"SD":"3045"}}'

    client = app.signed_in("reader")
    fleet = client.get("/console/fleet").text
    assert 'data-energy="open-hold-0001">no reading yet<' in fleet
    with ledger.engine.begin() as conn:
        ledger.add_readings(
            conn,
            "KIOSK-0003",
            [
                ("open-hold-0001", "begin", reading("B", "1204.250")),
                ("open-hold-0001", "charging", reading("C", "1210.000")),
                ("open-hold-0001", "charging", reading("C", "1216.755")),
            ],
        )
    fleet = client.get("/console/fleet").text
    assert 'data-energy="open-hold-0001">12.505 kWh<' in fleet
    page = client.get("/console/money").text
    assert "open-hold-0001" in page
    assert "lost-hold-0001" in page
    assert "Run a reconciliation round now" not in page  # read-only
    admin = app.signed_in("alice")
    app.clock.advance(minutes=3)  # past the terminal's grace for its own retry
    page = admin.get("/console/money").text
    answer = admin.post("/console/money/reconcile", data={"csrf": form_token(page)})
    assert answer.status_code == 200
    assert "Reconciliation round" in answer.text
    assert any(e["action"] == "reconcile" for e in app.operators.audit_entries())


def test_the_fleet_page_shows_faults_service_and_who_is_online(
    shop: tuple[ConsoleApp, Generator, str],
) -> None:
    app, _gen, _aid = shop
    ledger = app.built.ledger
    with ledger.engine.begin() as conn:
        ledger.add_events(
            conn,
            "KIOSK-0001",
            [
                ("k1-1", "fault", "meter"),
                ("k1-2", "fault", "pilot"),
                ("k1-3", "fault_cleared", "meter"),
                ("k1-4", "out_of_service", "on"),
            ],
        )
    app.clock.advance(minutes=30)
    with ledger.engine.begin() as conn:
        ledger.add_events(conn, "KIOSK-0002", [("k2-1", "started", "unsettled=0")])
    client = app.signed_in("reader")
    page = client.get("/console/fleet").text
    row1 = page.split('data-terminal="KIOSK-0001"')[1].split("</tr>")[0]
    assert "pilot" in row1
    assert "meter" not in row1
    assert "out of service" in row1
    assert "offline" in row1  # heard from 30 minutes ago
    row2 = page.split('data-terminal="KIOSK-0002"')[1].split("</tr>")[0]
    assert "online" in row2
    assert "in service" in row2
    app.clock.advance(minutes=11)
    assert (
        "online"
        not in client.get("/console/fleet")
        .text.split('data-terminal="KIOSK-0002"')[1]
        .split("</tr>")[0]
    )
