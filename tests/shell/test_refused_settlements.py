"""Every capture the gateway refuses is someone's problem: a late partial approval in
store-and-forward is captured up to what was approved with an alert for the difference; any
other refused capture or void raises an event the gateway acknowledges; `results` (what
`simulate --json` prints) says what the gateway holds, not what the kiosk asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.simulate import Simulation, parse_script
from terminal.config import Config, OfflineConfig
from tests.ledger_check import assert_ledger_agrees

SAF = OfflineConfig(
    store_and_forward=True,
    max_session=5000,
    max_outstanding=10_000,
    max_count=5,
    max_age_ms=24 * 3_600_000,
)


@pytest.fixture
def sim(config: Config, tmp_path: Path) -> Iterator[Simulation]:
    made = Simulation(config=replace(config, offline=SAF), data_dir=tmp_path / "saf")
    yield made
    made.close()


def _step(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(sim.profiles)):
        sim.run_step(step)


def _events(sim: Simulation, kind: str) -> list[dict[str, Any]]:
    """Events of `kind` the gateway acknowledged."""
    out = []
    for row in sim.daemon.journal.outbox():
        if row["kind"] == "events" and row["state"] == "done":
            event = json.loads(row["body"])["event"]
            if event["kind"] == kind:
                out.append(event)
    return out


@pytest.mark.slow
def test_a_late_partial_approval_is_captured_up_to_the_approval_with_an_alert(
    sim: Simulation,
) -> None:
    _step(sim, "gateway down\ntap partial\nexpect plug-in\nplug\nev charge\nwait 7h\n")
    _step(sim, "tap partial\nexpect receipt\nunplug\nwait 1m")
    [session] = sim.daemon.journal.sessions()
    priced = session["amount_minor"]
    assert priced > 2500  # more than the half the simulated processor approves for "partial"
    _step(sim, "gateway up\nwait 10m")

    [auth] = sim.gateway.ledger.all_authorizations()
    assert auth["amount_authorized"] == 2500
    assert auth["status"] == "captured"
    assert auth["amount_captured"] == 2500  # all that was approved, nothing refused
    [alert] = _events(sim, "capture_short")
    assert alert["detail"] == f"{session['session_id']} priced={priced} approved=2500"
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["amount_captured"] == 2500
    assert result["amount_priced"] == priced
    assert result["acknowledged"]
    assert [r for r in sim.daemon.journal.outbox() if r["state"] == "failed"] == []
    # The receipt totals what was captured: the priced lines, then a LIMIT line with its VAT.
    receipt = requests.get(f"{sim.gateway.url}/v1/receipts/{auth['receipt_id']}", timeout=10)
    stored = receipt.json()
    assert stored["total"] == 2500
    [limit] = [line for line in stored["lines"] if line["dimension"] == "LIMIT"]
    assert limit["incl_vat"] == 2500 - priced
    assert sum(line["incl_vat"] for line in stored["lines"]) == 2500
    assert stored["total_excl_vat"] + sum(v["vat"] for v in stored["vat"]) == 2500
    assert_ledger_agrees(sim)


def test_a_refused_capture_is_an_event_and_results_say_refused(sim: Simulation) -> None:
    _step(sim, "gateway down\ntap declined\nexpect plug-in\nplug\nev charge\nwait 30m\n")
    _step(sim, "tap declined\nexpect receipt\nunplug\nwait 1m\ngateway up\nwait 10m")

    [auth] = sim.gateway.ledger.all_authorizations()
    assert auth["status"] == "declined"
    [session] = sim.daemon.journal.sessions()
    [alert] = _events(sim, "capture_refused")
    assert alert["detail"].startswith(f"{session['session_id']} ")
    [result] = sim.results()
    assert result["settlement"] == "refused"
    assert result["amount_captured"] == 0
    assert result["amount_priced"] == session["amount_minor"] > 0
    assert_ledger_agrees(sim)
