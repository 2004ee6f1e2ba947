"""Incremental authorization in whole scripted sessions: the kiosk tops the hold up before
the cost reaches it, up to the configured ceiling; declined or unanswered, it stops at the
cap it has. Captured never exceeds what the gateway holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hardware.sim.card_script import load_profiles
from launcher.simulate import Simulation, parse_script
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees
from tests.test_contract import committed, documented_answer, request_validator

LONG_SESSION = """
tap visa
expect plug-in
plug
ev charge
wait 4h
tap visa
expect receipt
"""

# 4 h at 11 kW = 44 kWh at 0.3277 EUR/kWh: 14.42 + 19 % VAT 2.74 = 17.16 EUR, over the
# 10.00 EUR hold of these tests (a small hold keeps the simulated sessions short).
LONG_SESSION_MINOR = 1716


def with_increments(config: Config, increment: int = 500, ceiling: int = 3000) -> Config:
    payment = replace(
        config.payment, hold=1000, min_authorized=500, increment=increment, ceiling=ceiling
    )
    return replace(config, payment=payment)


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[list[Simulation]]:
    made: list[Simulation] = []
    yield made
    for sim in made:
        sim.close()


def start(config: Config, tmp_path: Path, sims: list[Simulation]) -> Simulation:
    sim = Simulation(config=config, data_dir=tmp_path / f"sim{len(sims)}")
    sims.append(sim)
    return sim


def run(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(load_profiles())):
        sim.run_step(step)


def moves(sim: Simulation) -> list[tuple[str, int]]:
    return [(m["kind"], m["amount"]) for m in sim.gateway.ledger.all_movements()]


@pytest.mark.slow
def test_hold_is_topped_up_before_the_cap_and_the_session_runs_on(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    sim = start(with_increments(config), tmp_path, sims)
    run(sim, LONG_SESSION)
    [result] = sim.results()
    assert result["ended"] == "card"
    assert result["amount_captured"] == LONG_SESSION_MINOR
    assert moves(sim) == [
        ("hold", 1000),
        ("increment", 500),
        ("increment", 500),
        ("capture", LONG_SESSION_MINOR),
    ]
    [row] = sim.gateway.ledger.all_authorizations()
    assert row["amount_authorized"] == 2000
    increments = [r for r in sim.daemon.journal.outbox() if r["kind"] == "increment"]
    sid = result["session_id"]
    assert [r["idem_key"] for r in increments] == [f"{sid}:increment:1", f"{sid}:increment:2"]
    assert_ledger_agrees(sim)


@pytest.mark.slow
def test_increments_stop_at_the_ceiling_and_charging_stops_at_it(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    sim = start(with_increments(config, increment=500, ceiling=1200), tmp_path, sims)
    run(sim, LONG_SESSION.replace("tap visa\nexpect receipt", ""))
    [result] = sim.results()
    assert result["ended"] == "cost_cap"
    # The last step is what is left under the ceiling; stopped within one sample of it.
    assert moves(sim)[:2] == [("hold", 1000), ("increment", 200)]
    assert 1200 - 1 <= result["amount_captured"] <= 1200
    assert_ledger_agrees(sim)


@pytest.mark.slow
def test_declined_increment_stops_charging_at_the_cap_it_has(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    sim = start(with_increments(config), tmp_path, sims)
    sim.gateway.processor.supports_increment = False
    run(sim, LONG_SESSION.replace("tap visa\nexpect receipt", ""))
    [result] = sim.results()
    assert result["ended"] == "cost_cap"
    assert 1000 - 1 <= result["amount_captured"] <= 1000
    assert [kind for kind, _ in moves(sim)] == ["hold", "capture"]
    [increment] = [r for r in sim.daemon.journal.outbox() if r["kind"] == "increment"]
    assert increment["state"] == "failed"
    assert_ledger_agrees(sim)


@pytest.mark.slow
def test_unanswered_increment_stops_at_the_cap_and_the_capture_follows_later(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    # 10.00 EUR is reached after about 2 h 20 min at 11 kW; the top-up is asked for just before.
    sim = start(with_increments(config), tmp_path, sims)
    run(
        sim,
        "tap visa\nplug\nev charge\nwait 139m\ngateway down\nwait 1h\ngateway up\nwait 10m\n",
    )
    [result] = sim.results()
    assert result["ended"] == "cost_cap"
    assert 1000 - 1 <= result["amount_captured"] <= 1000
    assert result["acknowledged"]
    assert [kind for kind, _ in moves(sim)] == ["hold", "capture"]
    assert_ledger_agrees(sim)


def test_increment_requests_and_answers_follow_the_contract(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    sim = start(with_increments(config), tmp_path, sims)
    run(sim, LONG_SESSION)
    document = committed()
    rows: list[dict[str, Any]] = [
        r for r in sim.daemon.journal.outbox() if r["kind"] == "increment"
    ]
    assert rows
    for row in rows:
        body = json.loads(row["body"])
        assert list(request_validator(document, row["path"]).iter_errors(body)) == []
        answer = json.loads(row["answer"])
        assert list(documented_answer(document, row["path"], 200).iter_errors(answer)) == []
