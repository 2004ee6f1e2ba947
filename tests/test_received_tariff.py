"""The tariff the operator assigns in the gateway's console reaches the kiosk through
`/v1/terminal-config` (under its ETag) and prices the next session: the idle screen shows
it, a running session keeps the tariff it started with (also when it is settled after a
restart), and a restart without the gateway keeps the received tariff (issue 13's kiosk
line). A simulated kiosk with the real gateway app embedded; operators sign in to the
console over HTTP as they would in a browser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from gateway.ledger.operators import Operators
from gateway.web.operator_auth import hash_password
from launcher.simulate import Simulation
from terminal.config import Config, OfflineConfig
from terminal.core.billing import EnergyTariff
from terminal.shell.journal import Journal
from terminal.shell.tariffs import TariffBook, tariff_key
from tests.test_offline import SYNC, run
from tests.web.console_app import PASSWORD, form_token, sign_in

CONFIGURED_PER_KWH = Decimal("0.39")  # deploy/terminal.toml: 0.3277 excl. 19 % VAT
RECEIVED_PER_KWH = Decimal("0.60")  # 0.50 excl. 20 % VAT
RECEIVED = {
    "country_code": "DE",
    "party_id": "EVT",
    "id": "received-060",
    "currency": "EUR",
    "type": "AD_HOC_PAYMENT",
    "elements": [
        {"price_components": [{"type": "ENERGY", "price": 0.5, "vat": 20.0, "step_size": 1}]}
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}
CHARGE = "tap visa\nwait 2s\nexpect plug-in\nplug\nev charge\nwait 30m\n"
STOP = "tap visa\nunplug\nwait 2m\n"


@pytest.fixture
def sim(config: Config, tmp_path: Path) -> Iterator[Simulation]:
    cfg = replace(config, offline=OfflineConfig())
    cfg = replace(cfg, payment=replace(cfg.payment, pay_by_phone=True))
    simulation = Simulation(config=cfg, data_dir=tmp_path / "sim")
    try:
        yield simulation
    finally:
        simulation.close()


def _console(sim: Simulation) -> TestClient:
    gateway = sim.gateway
    Operators(gateway.engine, gateway.ledger.clock).add(
        "alice", hash_password(PASSWORD), "admin", actor="cli"
    )
    client = TestClient(gateway.app, base_url="https://testserver")
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    return client


def _assign(client: TestClient, station: str, document: dict[str, object]) -> None:
    page = client.get("/console/tariffs").text
    saved = client.post(
        "/console/tariffs",
        data={"csrf": form_token(page), "ocpi": json.dumps(document)},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = client.get(f"/console/tariffs/{document['id']}").text
    assigned = client.post(
        f"/console/tariffs/{document['id']}/stations",
        data={"csrf": form_token(page), "terminal": [station]},
        follow_redirects=False,
    )
    assert assigned.status_code == 303


def _idle_price(sim: Simulation) -> str:
    shown = sim.hardware.display.current
    assert shown is not None and shown.name == "idle"
    return shown.lines[0]


def _cost(energy_wh: int, per_kwh: Decimal) -> int:
    """Energy at a unit price incl. VAT, in cents (docs/tariffs.md, "Rounding")."""
    amount = Decimal(energy_wh) / 1000 * per_kwh
    return int((amount * 100).quantize(Decimal(1), ROUND_HALF_UP))


def test_an_assigned_tariff_is_shown_and_prices_the_next_session(sim: Simulation) -> None:
    console = _console(sim)
    run(sim, "wait 1s\n")
    before = _idle_price(sim)
    assert "0.39" in before
    _assign(console, sim.config.station.id, RECEIVED)
    run(sim, f"wait {SYNC}\n")
    assert "0.6" in _idle_price(sim) and _idle_price(sim) != before
    assert sim.daemon.kiosk.rules.tariff_key == tariff_key(RECEIVED)
    run(sim, CHARGE + STOP)
    [result] = sim.results()
    assert result["energy_wh"] > 0
    assert result["amount_captured"] == _cost(result["energy_wh"], RECEIVED_PER_KWH)
    [row] = sim.daemon.journal.sessions()
    assert (row["tariff_key"], row["tariff_name"]) == (tariff_key(RECEIVED), "received-060")
    # The pay-by-phone page's offer shows the price the idle screen shows.
    assert sim.daemon.commands.offer is not None
    assert sim.daemon.commands.offer()["price"]["en"][0] == _idle_price(sim)


def test_a_running_session_keeps_the_tariff_it_started_with(sim: Simulation) -> None:
    console = _console(sim)
    run(sim, CHARGE)
    _assign(console, sim.config.station.id, RECEIVED)
    run(sim, f"wait {SYNC}\n")
    assert sim.daemon.kiosk.rules.tariff_key == tariff_key(RECEIVED)  # received meanwhile
    run(sim, STOP)
    [result] = sim.results()
    assert result["energy_wh"] > 0
    assert result["amount_captured"] == _cost(result["energy_wh"], CONFIGURED_PER_KWH)
    assert sim.daemon.journal.sessions()[0]["tariff_key"] is None  # the config file's
    assert "0.6" in _idle_price(sim)  # the next one is priced by the new tariff


def test_a_session_cut_by_a_restart_is_settled_by_the_tariff_it_started_with(
    sim: Simulation,
) -> None:
    console = _console(sim)
    _assign(console, sim.config.station.id, RECEIVED)
    run(sim, f"wait {SYNC}\n" + CHARGE)
    # The operator goes back to the old price while the session runs; then the kiosk dies.
    old = {
        **RECEIVED,
        "id": "back-to-039",
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.3277, "vat": 19.0, "step_size": 1}]}
        ],
    }
    _assign(console, sim.config.station.id, old)
    run(sim, f"wait {SYNC}\nrestart\nwait 2m\n")
    [result] = sim.results()
    assert result["energy_wh"] > 0
    assert result["amount_captured"] == _cost(result["energy_wh"], RECEIVED_PER_KWH)
    assert sim.daemon.kiosk.rules.tariff_key == tariff_key(old)


def test_a_restart_without_the_gateway_keeps_the_received_tariff(sim: Simulation) -> None:
    console = _console(sim)
    _assign(console, sim.config.station.id, RECEIVED)
    run(sim, f"wait {SYNC}\n")
    shown = _idle_price(sim)
    run(sim, "gateway down\nrestart\nwait 1m\n")
    assert _idle_price(sim) == shown
    assert sim.daemon.kiosk.rules.tariff_key == tariff_key(RECEIVED)
    run(sim, "gateway up\nwait 1m\n" + CHARGE + STOP)
    [result] = sim.results()
    assert result["amount_captured"] == _cost(result["energy_wh"], RECEIVED_PER_KWH)


def test_a_tariff_the_kiosk_cannot_price_by_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    configured = EnergyTariff(
        name="Standard AC", currency="EUR", per_kwh=Decimal("0.3277"), vat_percent=Decimal(19)
    )
    book = TariffBook(journal, configured=configured, tz=ZoneInfo("Europe/Berlin"), currency="EUR")

    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert book.receive({**RECEIVED, "currency": "USD"}, at) is None
    assert book.receive({"id": "no-elements"}, at) is None
    assert book.current() == (None, configured)
    changed = book.receive(RECEIVED, at)
    assert changed is not None and changed[0] == tariff_key(RECEIVED)
    assert book.receive(RECEIVED, at) is None  # the same document again: nothing new
    # Unassigned in the console: back to the config file's tariff, journaled too.
    assert book.receive(None, at) == (None, configured)
    again = TariffBook(journal, configured=configured, tz=ZoneInfo("UTC"), currency="EUR")
    assert again.current() == (None, configured)
    assert again.get(tariff_key(RECEIVED)).name == "received-060"
