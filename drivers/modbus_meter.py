"""Energy meter over Modbus RTU: Eastron SDM630 (v2) and SDM72D-M. Implements `Meter`.

Register maps (input registers, function code 04; each value an IEEE-754 float32 in two
registers, high word first):

| quantity            | SDM630 v2 (manual, "Input registers")  | SDM72D-M (manual)           |
|---------------------|----------------------------------------|-----------------------------|
| phase 1 L-N voltage | 30001 = 0x0000, V                      | (none)                      |
| phase 1 current     | 30007 = 0x0006, A                      | (none)                      |
| total system power  | 30053 = 0x0034, W                      | 30053 = 0x0034, W           |
| energy (billing)    | 30073 = 0x0048, total import kWh       | 30343 = 0x0156, total kWh   |

The SDM72D-M (first version) publishes no per-phase voltage or current and no separate import
register, so its billing register is "total kWh" (import + export); an EV charge point does
not export, so the two are equal there. Voltage and current read 0 on that model.

Energy: float kWh to integer Wh
-------------------------------
The register is a float32: 24 significant bits. Its step (one unit in the last place) is
2**(e - 23) kWh for a reading in [2**e, 2**(e+1)) kWh, so the Wh resolution the meter can
show at all is:

| register (kWh)        | step (Wh) |
|-----------------------|-----------|
| below 16 384          | <= 0.98   |
| 16 384 .. 32 768      | 1.95      |
| 65 536 .. 131 072     | 7.8       |
| 524 288 .. 1 048 576  | 62.5      |

`float32_kwh_to_wh` takes the exact binary value of the float32 (as a Fraction, no decimal
or binary rounding on the way), multiplies by 1000 and rounds *down*: a driver is never billed
for a fraction of a Wh the register does not show. Floor is monotonic, so a register that
never decreases gives Wh that never decrease. NaN, infinities and negatives are a MeterFault.
A reading lower than the highest one this driver has seen is a MeterFault too (a swapped
meter, a reset, a wrong register): energy is never guessed or clamped.

Failures: a timeout (after `retries`), a CRC error (pymodbus drops the frame, so it ends as a
timeout), an exception response or a missing port raise `MeterFault`; every read is bounded
by `timeout_s * (retries + 1)` per request.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction

from drivers.modbus_rtu import RtuBus, RtuError, RtuSettings, validate_unit_id
from hardware.ports import MeterFault, MeterReading


@dataclass(frozen=True, slots=True, kw_only=True)
class SdmRegisterMap:
    """Input register addresses of one meter model; None where the model has none."""

    energy_kwh: int
    power_w: int
    voltage_v: int | None = None
    current_a: int | None = None


METER_MODELS: dict[str, SdmRegisterMap] = {
    "sdm630": SdmRegisterMap(energy_kwh=0x0048, power_w=0x0034, voltage_v=0x0000, current_a=0x0006),
    "sdm72d-m": SdmRegisterMap(energy_kwh=0x0156, power_w=0x0034),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusMeterSettings:
    """[hardware.meter]: which meter, where. `meter_id` is the meter's serial number as
    printed on it (goes into signed readings); empty means "<model>-<unit_id>"."""

    port: str
    model: str = "sdm630"
    unit_id: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 0.5
    retries: int = 2
    meter_id: str = ""

    def __post_init__(self) -> None:
        if self.model not in METER_MODELS:
            raise ValueError(
                f"hardware.meter.model: must be one of {sorted(METER_MODELS)}, got {self.model!r}"
            )
        validate_unit_id(self.unit_id, "hardware.meter")
        self.rtu()  # validates the line settings

    def rtu(self) -> RtuSettings:
        return RtuSettings(
            port=self.port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout_s=self.timeout_s,
            retries=self.retries,
            section="hardware.meter",
        )


def decode_float32(registers: list[int]) -> float:
    """Two registers, high word first (Eastron word order), to a Python float (exact)."""
    (value,) = struct.unpack(">f", struct.pack(">HH", registers[0], registers[1]))
    return float(value)


def float32_kwh_to_wh(kwh: float) -> int:
    """Exact floor of kwh * 1000; see the module docstring for the resolution."""
    if not math.isfinite(kwh) or kwh < 0:
        raise MeterFault(f"energy register holds {kwh!r} kWh")
    return math.floor(Fraction(kwh) * 1000)


def float32_step_wh(kwh: float) -> Fraction:
    """The float32 step at `kwh`, in Wh: the finest change the register can show there."""
    if kwh <= 0:
        return Fraction(0)
    exponent = math.frexp(kwh)[1] - 1  # kwh in [2**exponent, 2**(exponent + 1))
    return Fraction(2) ** (exponent - 23) * 1000


class ModbusMeter:
    """Implements `hardware.ports.Meter` for an Eastron meter on a Modbus RTU line.

    Pass `bus` to share one RS-485 line with another driver; otherwise the meter opens its own.
    """

    def __init__(self, settings: ModbusMeterSettings, *, bus: RtuBus | None = None) -> None:
        self.settings = settings
        self._map = METER_MODELS[settings.model]
        self._bus = bus if bus is not None else RtuBus(settings.rtu())
        self._owns_bus = bus is None
        self._highest_wh: int | None = None

    @property
    def meter_id(self) -> str:
        return self.settings.meter_id or f"{self.settings.model}-{self.settings.unit_id}"

    def _float(self, register: int) -> float:
        try:
            registers = self._bus.read_input_registers(self.settings.unit_id, register, 2)
        except RtuError as exc:
            raise MeterFault(f"meter {self.meter_id}: {exc}") from exc
        return decode_float32(registers)

    def read(self) -> MeterReading:
        energy_wh = float32_kwh_to_wh(self._float(self._map.energy_kwh))
        if self._highest_wh is not None and energy_wh < self._highest_wh:
            raise MeterFault(
                f"meter {self.meter_id}: energy register went backwards "
                f"({self._highest_wh} Wh -> {energy_wh} Wh)"
            )
        self._highest_wh = energy_wh
        power = self._float(self._map.power_w)
        voltage = 0.0 if self._map.voltage_v is None else self._float(self._map.voltage_v)
        current = 0.0 if self._map.current_a is None else self._float(self._map.current_a)
        for name, value in (("power", power), ("voltage", voltage), ("current", current)):
            if not math.isfinite(value):
                raise MeterFault(f"meter {self.meter_id}: {name} register holds {value!r}")
        # Power, voltage and current are for display: rounded to nearest, never billed.
        return MeterReading(
            energy_wh=energy_wh,
            power_w=round(power),
            voltage_dv=round(voltage * 10),
            current_ma=round(current * 1000),
        )

    def close(self) -> None:
        if self._owns_bus:
            self._bus.close()
