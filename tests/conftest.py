"""Shared fixtures: the example config, pointed at a temporary data directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from launcher.simulate import Simulation, run_script
from terminal.config import Config, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "deploy" / "terminal.toml"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return replace(load(EXAMPLE_CONFIG), data_dir=tmp_path / "data")


@pytest.fixture
def simulate(config: Config, tmp_path: Path) -> Iterator[Callable[[str], Simulation]]:
    """Run a script; the simulations are closed after the test."""
    sims: list[Simulation] = []

    def run(script: str, cfg: Config | None = None) -> Simulation:
        sim = run_script(cfg or config, script, tmp_path / f"sim{len(sims)}")
        sims.append(sim)
        return sim

    yield run
    for sim in sims:
        sim.close()
