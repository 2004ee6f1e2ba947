"""A kiosk on the simulator in an OCPP 2.1 network: the reference CSMS on loopback and the
kiosk's config pointing at it (security profile 1 by default)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hardware.sim.card_script import load_profiles
from launcher.csms import Received, ReferenceCsms
from launcher.simulate import Simulation, parse_script
from terminal.config import Config, OcppConfig

PASSWORD = "correct horse battery staple"


def password_file(directory: Path, password: str = PASSWORD) -> Path:
    path = directory / "ocpp-password"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def with_ocpp(config: Config, csms: ReferenceCsms, directory: Path, **fields: Any) -> Config:
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        security_profile=1,
        password_file=password_file(directory),
        **fields,
    )
    return replace(config, ocpp=ocpp)


def run(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(load_profiles())):
        sim.run_step(step)


def transaction_events(
    csms: ReferenceCsms, transaction_id: str | None = None
) -> list[dict[str, Any]]:
    return [
        r.payload
        for r in csms.messages("TransactionEvent")
        if transaction_id is None or r.payload["transactionInfo"]["transactionId"] == transaction_id
    ]


def settlements(csms: ReferenceCsms) -> list[dict[str, Any]]:
    return [r.payload for r in csms.messages("NotifySettlement")]


def actions(received: list[Received]) -> list[str]:
    return [r.action for r in received]
