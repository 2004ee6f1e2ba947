"""Simulated energy meter reading the plant's register."""

from __future__ import annotations

from hardware.ports import MeterFault, MeterReading
from hardware.sim.plant import Plant

NOMINAL_VOLTAGE_DV = 2300  # 230.0 V, decivolts


class SimMeter:
    """Implements `hardware.ports.Meter`. Hook: `silence()` makes reads raise `MeterFault`
    until `unsilence()`; `reads` counts successful reads."""

    def __init__(self, plant: Plant, meter_id: str = "SIM-METER-0001") -> None:
        self._plant = plant
        self._id = meter_id
        self.silent = False
        self.reads = 0

    @property
    def meter_id(self) -> str:
        return self._id

    def read(self) -> MeterReading:
        if self.silent:
            raise MeterFault("meter did not answer")
        with self._plant.lock:
            energy = self._plant.register_wh()
            power = self._plant.power_w()
        self.reads += 1
        # Three-phase: P = sqrt(3) * U_LL * I; per-phase current shown for U_LN = 230 V, 3 phases.
        current_ma = power * 1000 * 10 // (NOMINAL_VOLTAGE_DV * 3) if power else 0
        return MeterReading(
            energy_wh=energy,
            power_w=power,
            voltage_dv=NOMINAL_VOLTAGE_DV,
            current_ma=current_ma,
        )

    def silence(self) -> None:
        self.silent = True

    def unsilence(self) -> None:
        self.silent = False
