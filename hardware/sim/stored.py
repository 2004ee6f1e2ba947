"""A simulated station whose physics outlive the daemon's process, as real hardware does.

The in-memory simulator dies with the daemon; a real meter, relay and car do not. Here the
plant (meter register, relay output, vehicle) and the simulated clock live in small files in a
state directory, written through on every change (an atomic rename; a killed process loses
nothing the kernel already has), so a daemon restarted after SIGKILL finds the world as it was.

The relay output is fail-open: its enable line drops when the process driving it dies. So on
load a relay that was conducting conducted until the last instant the dead process reached on
the clock, and then opened; the meter register keeps that energy.

The plant also appends one line to `plant-log.jsonl` every time the relay output changes, with
the register in watt-milliseconds and the wall time: the hardware's own record of what was
delivered, which tests compare with what the gateway captured. A closing also names the
session it served, as whoever drives the relay says at that instant (`StoredPlant.serving`):
an id only, never card data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hardware.clock import ManualClock
from hardware.ports import PilotState
from hardware.sim.plant import MS_PER_HOUR, Plant
from hardware.sim.vehicle import SimVehicle

CLOCK_FILE = "clock.json"
PLANT_FILE = "plant.json"
PLANT_LOG = "plant-log.jsonl"
EPOCH = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # the simulated world's time zero


RECORD_BYTES = 512  # one state record, padded: rewritten in place by one write


class _Record:
    """A small JSON state file rewritten in place by a single `pwrite` of a fixed-size,
    padded record: a killed process leaves either the old record or the new one (a kill
    lands between system calls, and the kernel keeps what was written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        text = self.path.read_bytes().rstrip(b" \n")
        if not text:
            return None
        data: dict[str, Any] = json.loads(text)
        return data

    def write(self, data: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        raw = json.dumps(data, sort_keys=True).encode()
        if len(raw) >= RECORD_BYTES:
            raise ValueError("state record too large")
        os.pwrite(self._fd, raw.ljust(RECORD_BYTES - 1) + b"\n", 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StoredClock(ManualClock):
    """A manual clock whose time is kept in a file: a new process goes on from where the last
    one got to. The new time is written before it can be observed."""

    def __init__(self, path: Path) -> None:
        self._record = _Record(path)
        state = self._record.read()
        mono = int(state["monotonic_ms"]) if state else 0
        super().__init__(start=EPOCH + timedelta(milliseconds=mono), monotonic_ms=mono)

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not go backwards")
        self._record.write({"monotonic_ms": self.monotonic_ms() + ms})
        super().advance(ms)

    def close(self) -> None:
        self._record.close()


class StoredPlant(Plant):
    """The plant, written through to `state_dir`; restores itself (fail-open) on load.
    `serving`, if set, says which session a relay closing serves when it closes."""

    def __init__(self, clock: StoredClock, state_dir: Path) -> None:
        self.serving: Callable[[], str | None] | None = None
        self._ready = False
        self._conducting = False
        self._demand_w = 0
        self.pilot = PilotState.A
        self.full = False
        super().__init__(clock)
        self._record = _Record(state_dir / PLANT_FILE)
        self._log = state_dir / PLANT_LOG
        self._saved: dict[str, Any] | None = None
        state = self._record.read()
        if state is not None:
            self._energy_wms = int(state["energy_wms"])
            self._last_ms = int(state["last_ms"])
            self._conducting = bool(state["conducting"])
            self._demand_w = int(state["demand_w"])
            self.pilot = PilotState(state["pilot"])
            self.full = bool(state["full"])
        self._ready = True
        self.accrue()  # up to the last instant the previous process reached
        if self._conducting:
            self.conducting = False  # the process that held the relay closed is gone
        self.save()

    # -- write-through state ----------------------------------------------------------------
    @property
    def conducting(self) -> bool:
        return self._conducting

    @conducting.setter
    def conducting(self, value: bool) -> None:
        changed = value != self._conducting
        self._conducting = value
        if self._ready and changed:
            self.save()
            entry: dict[str, Any] = {
                "wall_ns": time.time_ns(),
                "monotonic_ms": self._last_ms,
                "energy_wms": self._energy_wms,
                "closed": value,
            }
            if value:
                entry["session"] = self.serving() if self.serving is not None else None
            with self._log.open("a") as log:
                log.write(json.dumps(entry) + "\n")

    @property
    def demand_w(self) -> int:
        return self._demand_w

    @demand_w.setter
    def demand_w(self, value: int) -> None:
        self._demand_w = value
        if self._ready:
            self.save()

    def accrue(self) -> None:
        with self.lock:
            super().accrue()
            if self._ready:
                self.save()

    def save(self) -> None:
        with self.lock:
            state = {
                "energy_wms": self._energy_wms,
                "last_ms": self._last_ms,
                "conducting": self._conducting,
                "demand_w": self._demand_w,
                "pilot": self.pilot.value,
                "full": self.full,
            }
            if state != self._saved:
                self._record.write(state)
                self._saved = state

    def close(self) -> None:
        self._record.close()


class StoredVehicle(SimVehicle):
    """The car stays plugged in (and keeps asking for energy) across a daemon restart; a new
    daemon learns its state as its first pilot change, as a pilot driver's first read does."""

    def __init__(self, plant: StoredPlant) -> None:
        super().__init__(plant)
        self._stored = plant
        self.full = plant.full
        if plant.pilot is not PilotState.A:
            self._set(plant.pilot)

    def _set(self, state: PilotState) -> None:
        with self._stored.lock:
            self._stored.pilot = state
            self._stored.full = self.full
            super()._set(state)
            self._stored.save()


def register_log(state_dir: Path) -> list[dict[str, Any]]:
    """The plant's record of every relay change, oldest first."""
    path = state_dir / PLANT_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def delivered_wh(start_wms: int, end_wms: int) -> int:
    """Energy between two register values, as the meter's integer-Wh register shows it."""
    return end_wms // MS_PER_HOUR - start_wms // MS_PER_HOUR


def stored_plant(state_dir: Path) -> tuple[StoredClock, StoredPlant]:
    """The clock and plant of one simulated station kept in `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    clock = StoredClock(state_dir / CLOCK_FILE)
    return clock, StoredPlant(clock, state_dir)
