"""The set of devices the daemon drives, as ports."""

from __future__ import annotations

from dataclasses import dataclass

from hardware.ports import CardReader, Contactor, Display, Meter, VehicleLink, Watchdog


@dataclass(frozen=True, slots=True, kw_only=True)
class Devices:
    reader: CardReader
    contactor: Contactor
    meter: Meter
    vehicle: VehicleLink
    display: Display
    watchdog: Watchdog | None = None
