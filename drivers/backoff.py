"""Bounded exponential back-off between attempts at a device that keeps failing.

Every driver that retries on its own (the reader re-opening a lost PN532, the pilot poller
reading a board that does not answer) waits `delay(failures)` before the next attempt, so a
missing device costs the daemon a few attempts a second at most, never a spinning core, and a
device that comes back is found again within `maximum_s`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Delays between attempts: `initial_s`, times `factor` per failed attempt, at most
    `maximum_s`."""

    initial_s: float = 0.5
    factor: float = 2.0
    maximum_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.maximum_s or self.factor < 1:
            raise ValueError(f"back-off needs 0 < initial_s <= maximum_s and factor >= 1: {self}")

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.initial_s * self.factor ** (failures - 1), self.maximum_s))
