"""The set of devices the daemon drives, as ports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hardware.ports import CardReader, Contactor, Display, Meter, VehicleLink, Watchdog
from terminal.shell.fault_sink import FaultSink


@dataclass(frozen=True, slots=True, kw_only=True)
class Devices:
    reader: CardReader
    contactor: Contactor
    meter: Meter
    vehicle: VehicleLink
    display: Display
    watchdog: Watchdog | None = None
    # Hardware fault inputs (pi backend): connect to the daemon's `post` once it is built.
    faults: FaultSink | None = None
    # Stops device threads and frees ports and pins (pi backend); after the daemon stopped.
    teardown: Callable[[], None] | None = None

    def close(self) -> None:
        if self.teardown is not None:
            self.teardown()
