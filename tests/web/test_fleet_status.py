"""The fleet page shows what a kiosk reports of itself: a simulated kiosk (the real daemon,
its outbox and sender) charging against the gateway on both back-ends; its status heartbeat
carries the software version, the outbox's depth and the age of its oldest unsent request,
and the session under way with its energy and cost so far, and the page shows them."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from gateway.ledger.schema import terminal_status
from launcher.simulate import run_script
from terminal.config import Config
from terminal.money import Money
from terminal.version import software_version
from tests.test_contract import committed, request_validator
from tests.web.console_app import console_app

CHARGING = """
expect idle
tap visa
expect plug-in
plug
ev charge
expect charging
wait 20m
"""


def _row(page: str, marker: str) -> str:
    return page.split(marker)[1].split("</tr>", maxsplit=1)[0]


def test_a_charging_kiosk_shows_its_version_queue_and_cost_so_far(
    config: Config, tmp_path: Path, db_url: str
) -> None:
    sim = run_script(config, CHARGING, tmp_path / "sim", gateway_db=db_url)
    try:
        session = sim.daemon.kiosk.session
        assert session is not None and session.amount is not None
        terminal = config.station.id
        with sim.gateway.ledger.engine.connect() as conn:
            stored = json.loads(
                conn.execute(
                    sa.select(terminal_status.c.status).where(
                        terminal_status.c.terminal_id == terminal
                    )
                ).scalar_one()
            )
        # What the kiosk sent is what the committed contract says an events request is.
        request_validator(committed(), "/v1/events").validate(
            {"terminal_id": terminal, "events": [], "status": stored}
        )
        [progress] = stored["sessions"]
        assert progress["session_id"] == session.session_id
        assert stored["software_version"] == software_version()
        app = console_app(db_url)
        app.add("admin")
        app.clock.now = sim.clock.now()
        page = app.signed_in("admin").get("/console/fleet").text
        row = _row(page, f'data-terminal="{terminal}"')
        assert f'data-version="{terminal}">{software_version()}<' in row
        assert f'data-queue="{terminal}">0<' in row  # the gateway is up: nothing waits
        assert f'data-oldest="{terminal}">none<' in row
        # The last status was taken at most one heartbeat ago: its cost is at most the
        # session's now, and it is the kiosk's own figure, in the session's currency.
        cost = progress["cost"]
        assert cost["currency"] == session.amount.currency
        assert 0 < cost["minor"] <= session.amount.minor
        assert 0 < progress["energy_wh"] <= session.energy_wh
        shown = _row(page, f'data-cost="{session.session_id}"')
        assert Money(cost["minor"], cost["currency"]).format() in shown
    finally:
        sim.close()


def test_a_kiosk_back_from_an_outage_reports_its_queue_and_how_long_it_waited(
    config: Config, tmp_path: Path, db_url: str
) -> None:
    """While the gateway is down the kiosk queues its signed readings and events; the first
    status after it is back says how many and how long the oldest has waited."""
    script = CHARGING + "gateway down\nfault rcd_tripped\nwait 7m\ngateway up\nwait 2m\n"
    sim = run_script(config, script, tmp_path / "sim", gateway_db=db_url)
    try:
        terminal = config.station.id
        with sim.gateway.ledger.engine.connect() as conn:
            stored = json.loads(
                conn.execute(
                    sa.select(terminal_status.c.status).where(
                        terminal_status.c.terminal_id == terminal
                    )
                ).scalar_one()
            )
        assert stored["queue_depth"] > 0
        assert stored["oldest_unsent_s"] >= 6 * 60  # queued when the gateway went down
        app = console_app(db_url)
        app.add("admin")
        app.clock.now = sim.clock.now()
        page = app.signed_in("admin").get("/console/fleet").text
        row = _row(page, f'data-terminal="{terminal}"')
        assert f'data-queue="{terminal}">{stored["queue_depth"]}<' in row
        assert f'data-oldest="{terminal}">none<' not in row
    finally:
        sim.close()
