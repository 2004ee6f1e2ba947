"""Simulated contactor with auxiliary feedback contact and fault hooks."""

from __future__ import annotations

from hardware.ports import ContactorFault
from hardware.sim.plant import Plant


class SimContactor:
    """Implements `hardware.ports.Contactor`.

    Hooks: `weld()` makes the main contacts stick closed (feedback stays closed, energy keeps
    flowing) until `unweld()`; `fail_to_close()` makes a close command do nothing;
    `break_output()` makes commands raise `ContactorFault`. `history` records every command."""

    def __init__(self, plant: Plant) -> None:
        self._plant = plant
        self.commanded_closed = False
        self.welded = False
        self.stuck_open = False
        self.broken = False
        self.history: list[str] = []

    def _apply(self) -> None:
        with self._plant.lock:
            self._plant.accrue()
            self._plant.conducting = self.welded or (self.commanded_closed and not self.stuck_open)

    def open(self) -> None:
        self.history.append("open")
        if self.broken:
            raise ContactorFault("contactor output driver not responding")
        self.commanded_closed = False
        self._apply()

    def close(self) -> None:
        self.history.append("close")
        if self.broken:
            raise ContactorFault("contactor output driver not responding")
        self.commanded_closed = True
        self._apply()

    def release(self) -> None:
        self.history.append("release")
        self.commanded_closed = False
        self._apply()

    def feedback_closed(self) -> bool:
        return self._plant.conducting

    # -- test hooks -------------------------------------------------------------------------
    def weld(self) -> None:
        self.welded = True
        self._apply()

    def unweld(self) -> None:
        self.welded = False
        self._apply()

    def fail_to_close(self, on: bool = True) -> None:
        self.stuck_open = on
        self._apply()

    def break_output(self, on: bool = True) -> None:
        self.broken = on
