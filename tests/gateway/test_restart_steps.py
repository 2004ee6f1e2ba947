"""A crashed and restarted gateway at every step of a session: the session settles exactly
once, on both back-ends. `gateway restart` drops the embedded gateway abruptly (connections
cut, nothing but what was committed kept) and starts a new one on the same database."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.simulate import run_script
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees, assert_processor_agrees
from tests.test_sessions import EXPECTED_45M

SESSION = [
    "expect idle",
    "tap visa",
    "expect plug-in",
    "plug",
    "ev charge",
    "expect charging",
    "wait 45m",
    "tap visa",
    "expect receipt",
    "unplug",
    "wait 2m",
    "expect idle",
]
# Where a restart can land: after each step that is not an `expect`.
POINTS = [i for i, step in enumerate(SESSION) if not step.startswith("expect")]


@pytest.mark.parametrize("after", POINTS, ids=[f"after-{SESSION[i]}" for i in POINTS])
def test_a_gateway_restart_at_any_step_settles_the_session_once(
    config: Config, tmp_path: Path, db_url: str, after: int
) -> None:
    steps = [*SESSION[: after + 1], "gateway restart", *SESSION[after + 1 :], "wait 5m"]
    sim = run_script(config, "\n".join(steps), tmp_path / "sim", gateway_db=db_url)
    try:
        [result] = sim.results()
        assert result["settlement"] == "captured"
        assert {k: result[k] for k in EXPECTED_45M} == EXPECTED_45M
        assert_ledger_agrees(sim)
        assert_processor_agrees(
            sim.gateway.ledger.all_authorizations(), sim.gateway.processor.payments()
        )
        assert sim.gateway.processor.payments()[0]["captured"] == EXPECTED_45M["amount_captured"]
    finally:
        sim.close()
