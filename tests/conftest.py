"""Shared fixtures: the example config, pointed at a temporary data directory; headless
Chromium (Debian's) through Playwright, one per worker process, for every page test (kiosk and
gateway); the directory for screenshots (test-artifacts/, kept by CI, ignored by git).

The suite runs in parallel (`make test`: pytest-xdist, `--dist loadfile`, one file per worker
at a time). A worker's session fixtures (PostgreSQL, Prism, LNbits, localstripe, Chromium) are
its own: each takes its ports from the worker's block (`tests/ports.py`) and a temporary
directory, never a fixed one. The long files are collected first
(`pytest_collection_modifyitems` below) so they start at once instead of keeping one worker
busy after the others have finished."""

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


def _start_order(item: pytest.Item) -> tuple[int, float]:
    """Slow tests first, the longest declared time limit (pytest-timeout's mark) first among
    them: under `--dist loadfile` the files are handed out in collection order, so the run is
    as long as the longest file that starts last."""
    timeout = item.get_closest_marker("timeout")
    limit = float(timeout.args[0]) if timeout is not None and timeout.args else 0.0
    return (0 if item.get_closest_marker("slow") is not None else 1, -limit)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files keep their tests together and in order; a file starts as early as its most
    urgent test (a stable sort on a key per file)."""
    per_file: dict[str, tuple[int, float]] = {}
    for item in items:
        key = _start_order(item)
        per_file[item.path.as_posix()] = min(per_file.get(item.path.as_posix(), key), key)
    items.sort(key=lambda item: per_file[item.path.as_posix()])


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
