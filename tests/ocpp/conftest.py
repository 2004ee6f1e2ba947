"""Fixtures: the reference CSMS on loopback and kiosks on the simulator joined to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.config import Config
from tests.ocpp.harness import PASSWORD, with_ocpp

Kiosk = Callable[..., Simulation]


@pytest.fixture
def csms(config: Config) -> Iterator[ReferenceCsms]:
    server = ReferenceCsms(passwords={config.station.id: PASSWORD}, heartbeat_s=60).start()
    yield server
    server.stop()


@pytest.fixture
def kiosk(config: Config, csms: ReferenceCsms, tmp_path: Path) -> Iterator[Kiosk]:
    """A kiosk joined to `csms` (security profile 1), online before it is returned."""
    made: list[Simulation] = []

    def make(cfg: Config | None = None, **ocpp_fields: object) -> Simulation:
        joined = with_ocpp(cfg or config, csms, tmp_path, **ocpp_fields)
        sim = Simulation(config=joined, data_dir=tmp_path / f"kiosk{len(made)}")
        made.append(sim)
        assert sim.ocpp is not None and sim.ocpp.wait_online(10)
        return sim

    yield make
    for sim in made:
        sim.close()
