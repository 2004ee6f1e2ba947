"""The simulated station: contactor, vehicle and meter wired together like the real thing.

Energy flows only while the contactor's *output* is closed (a welded contactor conducts even
when commanded open) and the vehicle asks for energy (IEC 61851 state C or D) and is not full.
The meter integrates that power over simulated time in integer watt-milliseconds, so its
register (integer Wh) is exact and monotonic.
"""

from __future__ import annotations

import threading

from hardware.clock import Clock

MS_PER_HOUR = 3_600_000


class Plant:
    """Shared physics of the simulated devices; every device change calls `accrue` first."""

    def __init__(self, clock: Clock, *, initial_register_wh: int = 1_234_567) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._energy_wms = initial_register_wh * MS_PER_HOUR  # watt-milliseconds
        self._last_ms = clock.monotonic_ms()
        self.conducting = False  # contactor output closed
        self.demand_w = 0  # what the vehicle draws when allowed

    def power_w(self) -> int:
        return self.demand_w if self.conducting else 0

    def accrue(self) -> None:
        """Integrate power up to now."""
        with self.lock:
            now = self.clock.monotonic_ms()
            if now > self._last_ms:
                self._energy_wms += self.power_w() * (now - self._last_ms)
            self._last_ms = now

    def register_wh(self) -> int:
        with self.lock:
            self.accrue()
            return self._energy_wms // MS_PER_HOUR
