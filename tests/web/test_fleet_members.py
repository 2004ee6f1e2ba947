"""Who is on the fleet page and when it last heard from each: read from what is kept per
terminal (registry, status, health) and the open holds, never from the history of sessions
and readings; through the real app on both back-ends."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import wire
from gateway.ledger.console_views import fleet
from gateway.ledger.web_schema import READ_ONLY
from gateway.payments.answers import Unanswered
from tests.web.console_app import ConsoleApp, console_app, form_token
from tests.web.generate import Generator, _store


@pytest.fixture
def app(db_url: str) -> ConsoleApp:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role=READ_ONLY)
    return app


def _row(app: ConsoleApp, terminal: str) -> str | None:
    page = app.signed_in("reader").get("/console/fleet").text
    if f'data-terminal="{terminal}"' not in page:
        return None
    return page.split(f'data-terminal="{terminal}"')[1].split("</tr>")[0]


def _heartbeat(app: ConsoleApp, terminal: str) -> None:
    """What `POST /v1/events` keeps of a kiosk's status heartbeat."""
    ledger = app.built.ledger
    status = {"software_version": "9.9.9", "queue_depth": 0, "sessions": []}
    with ledger.engine.begin() as conn:
        ledger.put_status(conn, terminal, json.dumps(status))


def _hold(app: ConsoleApp, aid: str, terminal: str, last4: str = "4242") -> None:
    answer = app.built.payments.authorize(
        wire.AuthorizationRequest(
            authorization_id=aid,
            terminal_id=terminal,
            amount=wire.Amount(minor=5000, currency="EUR"),
            card=wire.CardIn(kind="payment", token=f"tok-{aid}", brand="Visa", last4=last4),
        ),
        _store,
    )
    assert answer.body["status"] == "approved"


def _seen(at: datetime) -> str:
    return f'data-label="Last seen">{at.strftime("%Y-%m-%d %H:%M")}<'


def test_registered_reporting_and_holding_terminals_are_listed_not_ones_known_from_history(
    app: ConsoleApp,
) -> None:
    gen = Generator(app.built.payments, app.clock, seed=3)  # registers KIOSK-0001..0004
    # A kiosk known only from a settled session and its signed readings: not registered, no
    # status or event kept, nothing held.
    old = gen.session(app.clock.now, currency="EUR", terminal="KIOSK-OLD")
    ledger = app.built.ledger
    with ledger.engine.begin() as conn:
        ledger.add_readings(
            conn, "KIOSK-OLD", [(old, "begin", 'OCMF|{"RD":[{"RV":1.0}]}|{"SD":"30"}')]
        )
    _hold(app, "held-0001", "KIOSK-HOLD")  # holds money, never reported
    _heartbeat(app, "KIOSK-BEAT")  # reports, never held anything
    app.clock.advance(minutes=1)

    assert _row(app, "KIOSK-OLD") is None
    held = _row(app, "KIOSK-HOLD")
    assert held is not None
    assert 'data-label="Open holds">1<' in held
    assert 'data-label="Last seen">never<' in held  # a hold is not the kiosk's word
    assert "offline" in held
    registered = _row(app, "KIOSK-0003")
    assert registered is not None and "Hafen 1" in registered and "never" in registered
    beat = _row(app, "KIOSK-BEAT")
    assert beat is not None and "online" in beat and 'data-version="KIOSK-BEAT">9.9.9<' in beat

    # The hold is settled (no energy: voided): KIOSK-HOLD is now known from history alone.
    voided = app.built.payments.void("held-0001", "KIOSK-HOLD", "no_energy", _store)
    assert voided.body["status"] == "voided"
    assert _row(app, "KIOSK-HOLD") is None
    # The old kiosk reports again (or is registered): it is back, with its word.
    _heartbeat(app, "KIOSK-OLD")
    back = _row(app, "KIOSK-OLD")
    assert back is not None and "online" in back and _seen(app.clock.now) in back


def test_last_seen_is_the_kiosks_own_word_not_the_gateways_work_on_its_holds(
    app: ConsoleApp,
) -> None:
    """A kiosk goes silent with a hold whose answer was lost; half an hour later the
    reconciler settles the hold's step (its row's `updated_at` moves): the kiosk is still
    offline, last seen at its heartbeat. Its next event brings it back online."""
    _heartbeat(app, "KIOSK-0004")
    heard = app.clock.now
    with pytest.raises(Unanswered):  # the simulated processor's test card 0135
        _hold(app, "lost-0001", "KIOSK-0004", last4="0135")
    app.clock.advance(minutes=30)
    admin = app.signed_in("alice")
    page = admin.get("/console/money").text
    assert (
        admin.post("/console/money/reconcile", data={"csrf": form_token(page)}).status_code == 200
    )
    row = app.built.ledger.fetch("lost-0001")
    assert row is not None and row.updated_at.replace(tzinfo=None) > heard.replace(tzinfo=None)
    silent = _row(app, "KIOSK-0004")
    assert silent is not None
    assert "offline" in silent and _seen(heard) in silent
    ledger = app.built.ledger
    with ledger.engine.begin() as conn:
        ledger.add_events(conn, "KIOSK-0004", [("k4-1", "started", "unsettled=1")])
    back = _row(app, "KIOSK-0004")
    assert back is not None and "online" in back and _seen(app.clock.now) in back


def test_the_fleet_reads_no_sessions_or_readings_history(app: ConsoleApp) -> None:
    """What `fleet` asks the database: nothing of `meter_readings`, and of `authorizations`
    only the approved holds (the `authorizations_open` index's leading column)."""
    gen = Generator(app.built.payments, app.clock, seed=4)
    gen.session(app.clock.now, currency="EUR", terminal="KIOSK-0001")
    _hold(app, "held-0002", "KIOSK-0002")
    engine = app.built.ledger.engine
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        terminals = {t.terminal_id: t for t in fleet(engine)}
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert terminals["KIOSK-0002"].open_holds == 1
    assert terminals["KIOSK-0001"].open_holds == 0
    assert statements
    assert not [s for s in statements if "meter_readings" in s]
    on_authorizations = [s for s in statements if "from authorizations" in s]
    assert len(on_authorizations) == 1
    assert "where authorizations.status =" in on_authorizations[0]


def test_open_holds_count_only_approved_holds(app: ConsoleApp) -> None:
    _hold(app, "held-000a", "KIOSK-0001")
    _hold(app, "held-000b", "KIOSK-0001")
    _hold(app, "held-000c", "KIOSK-0002")
    app.built.payments.void("held-000b", "KIOSK-0001", "no_energy", _store)
    app.clock.advance(minutes=1)
    counts = {t.terminal_id: t.open_holds for t in fleet(app.built.ledger.engine)}
    assert counts["KIOSK-0001"] == 1 and counts["KIOSK-0002"] == 1
