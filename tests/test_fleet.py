"""Two kiosks of one fleet against one gateway: the same card is one card everywhere.

Both kiosks are whole daemons on the simulator (card kernel, protection module, journal,
outbox, uplink) with their own key directories from one `provision_fleet`; the gateway holds
the fleet's gateway keys and decrypts both kiosks' blobs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gateway.server import EmbeddedGateway
from hardware.clock import ManualClock
from hardware.sim.card_script import load_profiles
from terminal.config import Config
from terminal.protection.keys import ProvisionedFleet, provision_fleet
from terminal.shell.daemon import Daemon
from terminal.station import SimHardware, build_daemon

MAX_SETTLE_ROUNDS = 1000


@dataclass
class Kiosk:
    """One kiosk's daemon and simulated devices, stepped as the scripted simulator steps."""

    daemon: Daemon
    hardware: SimHardware
    clock: ManualClock

    def settle(self) -> None:
        for _ in range(MAX_SETTLE_ROUNDS):
            busy = self.daemon.poll_devices()
            busy |= self.daemon.pump() > 0
            busy |= self.daemon.sender.drain_once().sent > 0
            busy |= self.daemon.pump() > 0
            if not busy:
                return
        raise AssertionError("the kiosk did not settle")

    def wait(self, ms: int) -> None:
        end = self.clock.monotonic_ms() + ms
        while (now := self.clock.monotonic_ms()) < end:
            due = self.daemon.timers.next_due()
            self.clock.advance(end - now if due is None else max(1, min(end, due) - now))
            self.settle()

    def screen(self) -> str | None:
        frame = self.hardware.display.current
        return frame.name if frame else None


@pytest.fixture
def fleet(tmp_path: Path) -> ProvisionedFleet:
    return provision_fleet(tmp_path / "keys", fleet_id="fleet", devices=["KIOSK-1", "KIOSK-2"])


@pytest.fixture
def gateway(tmp_path: Path, fleet: ProvisionedFleet) -> Iterator[EmbeddedGateway]:
    server = EmbeddedGateway(tmp_path / "gateway.sqlite3", key_dir=fleet.gateway_dir)
    server.up()
    yield server
    server.close()


@pytest.fixture
def kiosks(
    config: Config, tmp_path: Path, fleet: ProvisionedFleet, gateway: EmbeddedGateway
) -> Iterator[list[Kiosk]]:
    kiosks = []
    for name, key_dir in fleet.device_dirs.items():
        clock = ManualClock()
        hardware = SimHardware.build(clock)
        daemon = build_daemon(
            config=replace(
                config,
                data_dir=tmp_path / name,
                station=replace(config.station, id=name),
            ),
            devices=hardware.devices(),
            clock=clock,
            gateway_url=gateway.url,
            key_dir=key_dir,
        )
        daemon.start()
        kiosk = Kiosk(daemon=daemon, hardware=hardware, clock=clock)
        kiosk.settle()
        kiosks.append(kiosk)
    yield kiosks
    for kiosk in kiosks:
        kiosk.daemon.journal.close()


def charge(kiosk: Kiosk, card: str) -> None:
    """Tap, plug, charge for 30 minutes, stop with the same card, unplug."""
    profiles = load_profiles()
    kiosk.hardware.reader.present(profiles[card].card())
    kiosk.settle()
    assert kiosk.screen() == "plug-in"
    kiosk.hardware.vehicle.plug()
    kiosk.hardware.vehicle.charge()
    kiosk.settle()
    kiosk.wait(30 * 60_000)
    kiosk.hardware.reader.present(profiles[card].card())
    kiosk.settle()
    assert kiosk.screen() == "receipt"
    kiosk.hardware.vehicle.unplug()
    kiosk.wait(2 * 60_000)


def test_the_same_card_on_two_kiosks_is_one_card_at_the_gateway(
    kiosks: list[Kiosk], gateway: EmbeddedGateway
) -> None:
    first, second = kiosks

    charge(first, "visa")
    charge(second, "visa")
    charge(second, "mastercard")

    rows = gateway.ledger.all_authorizations()
    assert [(row["terminal_id"], row["status"]) for row in rows] == [
        ("KIOSK-1", "captured"),
        ("KIOSK-2", "captured"),
        ("KIOSK-2", "captured"),
    ]
    visa_token = rows[0]["card_token"]
    assert rows[1]["card_token"] == visa_token
    assert rows[2]["card_token"] != visa_token
    history = gateway.ledger.card_history(visa_token)
    assert [(row["terminal_id"], row["card_last4"]) for row in history] == [
        ("KIOSK-1", "0010"),
        ("KIOSK-2", "0010"),
    ]
    # The kiosks' journals hold the same token too: tap-to-stop matched it on each.
    journaled = [kiosk.daemon.journal.sessions()[0]["card_token"] for kiosk in kiosks]
    assert journaled == [visa_token, visa_token]
