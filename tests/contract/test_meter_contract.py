"""The `Meter` contract, run over the simulator and the Modbus driver on its emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from drivers.modbus_meter import ModbusMeter, ModbusMeterSettings
from hardware.clock import ManualClock
from hardware.emulators.modbus_devices import EmulatedSdmMeter, ModbusRtuEmulator
from hardware.ports import Meter, MeterFault
from hardware.sim.meter import SimMeter
from hardware.sim.plant import Plant


@dataclass
class MeterRig:
    meter: Meter
    add_energy_wh: Callable[[int], None]
    silence: Callable[[], None]
    unsilence: Callable[[], None]
    resolution_wh: int  # how far below the exact sum a reading may be (float32 registers)


def sim_rig() -> Iterator[MeterRig]:
    clock = ManualClock()
    plant = Plant(clock)
    meter = SimMeter(plant)

    def add_energy_wh(wh: int) -> None:
        with plant.lock:
            plant.accrue()
            plant.conducting, plant.demand_w = True, wh * 3600
        clock.advance(1000)  # one second at wh * 3600 W is wh Wh
        with plant.lock:
            plant.accrue()
            plant.conducting, plant.demand_w = False, 0

    yield MeterRig(meter, add_energy_wh, meter.silence, meter.unsilence, 0)


def modbus_rig() -> Iterator[MeterRig]:
    device = EmulatedSdmMeter(energy_wh=1_234_567)
    register = [1_234_567]

    def add_energy_wh(wh: int) -> None:
        register[0] += wh
        device.set_energy_wh(register[0])

    with ModbusRtuEmulator(device) as emulator:
        meter = ModbusMeter(
            ModbusMeterSettings(port=emulator.port, baudrate=38400, timeout_s=0.05, retries=1)
        )
        yield MeterRig(meter, add_energy_wh, device.go_silent, device.resume, 1)
        meter.close()


@pytest.fixture(params=["sim", "modbus"])
def rig(request: pytest.FixtureRequest) -> Iterator[MeterRig]:
    yield from (sim_rig() if request.param == "sim" else modbus_rig())


def test_meter_has_an_id(rig: MeterRig) -> None:
    assert isinstance(rig.meter.meter_id, str)
    assert rig.meter.meter_id


def test_reading_follows_the_register_and_never_goes_down(rig: MeterRig) -> None:
    first = rig.meter.read().energy_wh
    assert rig.meter.read().energy_wh == first  # nothing delivered: nothing invented
    rig.add_energy_wh(500)
    second = rig.meter.read().energy_wh
    assert first + 500 - rig.resolution_wh <= second <= first + 500


def test_silent_meter_raises_and_is_never_guessed(rig: MeterRig) -> None:
    before = rig.meter.read().energy_wh
    rig.silence()
    rig.add_energy_wh(100)
    with pytest.raises(MeterFault):
        rig.meter.read()
    rig.unsilence()
    after = rig.meter.read().energy_wh
    assert before + 100 - rig.resolution_wh <= after <= before + 100
