"""Simulated vehicle on the charging cable, seen through the control pilot."""

from __future__ import annotations

import queue

from hardware.ports import PilotState
from hardware.sim.plant import Plant

DEFAULT_POWER_W = 11_000  # a typical 3-phase 16 A on-board charger


class SimVehicle:
    """Implements `hardware.ports.VehicleLink`, plus the driver's and the car's actions.

    `plug` → B; `charge` → C (asks for energy); `pause` → B; `done` → B and full (it will not
    ask again); `unplug` → A; `pilot_fault` → E or F. Each change is reported once by
    `wait_change`. `history` records the states.

    The pilot's PWM (`offer` / `withdraw`, as the EVSE board does it) decides whether asking
    is granted: with no energy on offer a car that asks waits in B, a car in C goes to B, and
    it asks again when energy is offered (IEC 61851-1 Annex A). Energy is on offer at first,
    as on the EVSE board; the machine withdraws it at power-up. `offers` records the current
    of each offer (0 for a withdrawal)."""

    def __init__(self, plant: Plant, power_w: int = DEFAULT_POWER_W) -> None:
        self._plant = plant
        self._state = PilotState.A
        self._car = PilotState.A  # what the car asks for
        self._offered = True
        self._changes: queue.Queue[PilotState] = queue.Queue()
        self.power_w = power_w
        self.full = False
        self.history: list[PilotState] = [PilotState.A]
        self.offers: list[int] = []

    def state(self) -> PilotState:
        return self._state

    def wait_change(self, timeout: float) -> PilotState | None:
        try:
            if timeout <= 0:
                return self._changes.get_nowait()
            return self._changes.get(timeout=timeout)
        except queue.Empty:
            return None

    def offer(self, current_a: int) -> None:
        self.offers.append(current_a)
        self._offered = True
        self._update(report_same=False)

    def withdraw(self) -> None:
        self.offers.append(0)
        self._offered = False
        self._update(report_same=False)

    def _set(self, state: PilotState) -> None:
        self._car = state
        self._update(report_same=True)

    def _update(self, *, report_same: bool) -> None:
        granted = self._offered or not self._car.wants_energy
        state = self._car if granted else PilotState.B
        if state is self._state and not report_same:
            return
        with self._plant.lock:
            self._plant.accrue()
            self._state = state
            self._plant.demand_w = self.power_w if state.wants_energy and not self.full else 0
        self.history.append(state)
        self._changes.put(state)

    # -- driver and car actions --------------------------------------------------------------
    def plug(self) -> None:
        self.full = False
        self._set(PilotState.B)

    def charge(self) -> None:
        self._set(PilotState.C)

    def pause(self) -> None:
        self._set(PilotState.B)

    def done(self) -> None:
        self.full = True
        self._set(PilotState.B)

    def unplug(self) -> None:
        self._set(PilotState.A)

    def pilot_fault(self, state: PilotState = PilotState.F) -> None:
        self._set(state)
