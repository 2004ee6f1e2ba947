"""Clocks: time arrives as data.

The shell and the simulator read time only through a `Clock`: monotonic integer milliseconds for
timeouts and energy integration, aware UTC for records. `ManualClock` is advanced by tests and the
scripted simulator; `ScaledClock` runs the demo faster than real time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of time. `monotonic_ms` never goes backwards; `now` is aware UTC."""

    def monotonic_ms(self) -> int: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Real time, run `speed` times faster from the moment it is made (for the demo)."""

    def __init__(self, speed: float, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self._t0_ns = time.monotonic_ns()
        self._start = start or datetime.now(UTC)

    def _elapsed_ms(self) -> int:
        return int((time.monotonic_ns() - self._t0_ns) * self._speed) // 1_000_000

    def monotonic_ms(self) -> int:
        return self._elapsed_ms()

    def now(self) -> datetime:
        return self._start + timedelta(milliseconds=self._elapsed_ms())


class ManualClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, start: datetime | None = None, monotonic_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self._mono = monotonic_ms
        self._start = start or datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._base_mono = monotonic_ms

    def monotonic_ms(self) -> int:
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(milliseconds=self._mono - self._base_mono)

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            self._mono += ms
