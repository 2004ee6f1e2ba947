"""Shared fixtures: the example config, pointed at a temporary data directory; headless
Chromium (Debian's) through Playwright, one per run, for every page test (kiosk and gateway);
the directory for screenshots (test-artifacts/, kept by CI, ignored by git)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from launcher.simulate import Simulation, run_script
from terminal.config import Config, load
from tests.drivers.kiosk_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.ports import refused_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "deploy" / "terminal.toml"


@pytest.fixture(scope="session")
def unreachable_port() -> Iterator[int]:
    """A loopback port that refuses every connection for the whole run (`tests.ports`)."""
    with refused_port() as port:
        yield port


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


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless. The kiosk runs the same browser in --kiosk mode. One per
    run: Playwright's sync API allows one running instance per process."""
    from playwright.sync_api import sync_playwright  # imported only where a page is tested

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
