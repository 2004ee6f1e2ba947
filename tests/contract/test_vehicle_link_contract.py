"""The `VehicleLink` contract, over the simulator, the EVSE-DIN driver on its emulated board
and the GPIO driver on gpiozero mock pins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import InputPin
from drivers.vehicle_link import (
    DEFAULT_PILOT_CODES,
    EvseDinLink,
    EvseDinSettings,
    GpioPilotLink,
    GpioPilotSettings,
)
from hardware.clock import ManualClock
from hardware.emulators.modbus_devices import EmulatedEvseBoard, ModbusRtuEmulator
from hardware.ports import PilotState, VehicleLink
from hardware.sim.plant import Plant
from hardware.sim.vehicle import SimVehicle

WAIT_S = 2.0  # an upper bound only
PILOT_PINS = (12, 13, 16)


@dataclass
class LinkRig:
    link: VehicleLink
    set_state: Callable[[PilotState], None]


def sim_rig() -> Iterator[LinkRig]:
    vehicle = SimVehicle(Plant(ManualClock()))
    actions = {
        PilotState.A: vehicle.unplug,
        PilotState.B: vehicle.plug,
        PilotState.C: vehicle.charge,
    }
    yield LinkRig(vehicle, lambda state: actions[state]())


def evse_din_rig() -> Iterator[LinkRig]:
    board = EmulatedEvseBoard()
    with ModbusRtuEmulator(board) as emulator:
        link = EvseDinLink(
            EvseDinSettings(port=emulator.port, baudrate=38400, timeout_s=0.05, confirm_reads=2)
        )
        yield LinkRig(link, board.set_state)
        link.close()


def gpio_rig() -> Iterator[LinkRig]:
    factory = MockFactory()
    codes = {state: code for code, state in DEFAULT_PILOT_CODES.items()}

    def set_state(state: PilotState) -> None:
        for index, pin in enumerate(PILOT_PINS):
            if codes[state] >> (len(PILOT_PINS) - 1 - index) & 1:
                factory.pin(pin).drive_high()
            else:
                factory.pin(pin).drive_low()

    set_state(PilotState.A)
    pins = tuple(InputPin(pin=pin, pull_up=None, active_state=True) for pin in PILOT_PINS)
    link = GpioPilotLink(GpioPilotSettings(pins=pins), factory)
    yield LinkRig(link, set_state)
    link.close()
    factory.close()


RIGS = {"sim": sim_rig, "evse-din": evse_din_rig, "gpio": gpio_rig}


@pytest.fixture(params=sorted(RIGS))
def rig(request: pytest.FixtureRequest) -> Iterator[LinkRig]:
    yield from RIGS[request.param]()


def test_link_starts_with_no_vehicle_and_no_change(rig: LinkRig) -> None:
    assert rig.link.state() is PilotState.A
    assert rig.link.wait_change(0) is None
    assert rig.link.wait_change(0.05) is None


def test_each_change_is_reported_once(rig: LinkRig) -> None:
    for state in (PilotState.B, PilotState.C, PilotState.B, PilotState.A):
        rig.set_state(state)
        assert rig.link.wait_change(WAIT_S) is state
        assert rig.link.state() is state
    assert rig.link.wait_change(0.05) is None
