"""The `Contactor` contract, over the simulator and the GPIO driver on gpiozero mock pins
(relay output wired to the feedback input, like a contactor's auxiliary contact)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from drivers.gpio import ContactorPins, GpioContactor, InputPin
from hardware.clock import ManualClock
from hardware.ports import Contactor
from hardware.sim.contactor import SimContactor
from hardware.sim.plant import Plant

RELAY, FEEDBACK = 17, 27


@dataclass
class ContactorRig:
    contactor: Contactor
    output_closed: Callable[[], bool]


def sim_rig() -> Iterator[ContactorRig]:
    plant = Plant(ManualClock())
    contactor = SimContactor(plant)
    yield ContactorRig(contactor, lambda: plant.conducting)


def gpio_rig() -> Iterator[ContactorRig]:
    factory = MockFactory()
    feedback = factory.pin(FEEDBACK)
    relay = factory.pin(RELAY, pin_class=MockConnectedPin, input_pin=feedback)
    pins = ContactorPins(
        relay_pin=RELAY, feedback=InputPin(pin=FEEDBACK, pull_up=None, active_state=True)
    )
    contactor = GpioContactor(pins, factory)
    yield ContactorRig(contactor, lambda: relay.function == "output" and bool(relay.state))
    contactor.close_devices()
    factory.close()


@pytest.fixture(params=["sim", "gpio"])
def rig(request: pytest.FixtureRequest) -> Iterator[ContactorRig]:
    yield from (sim_rig() if request.param == "sim" else gpio_rig())


def test_contactor_starts_open(rig: ContactorRig) -> None:
    assert not rig.output_closed()
    assert not rig.contactor.feedback_closed()


def test_open_and_close_drive_the_output_and_feedback_follows(rig: ContactorRig) -> None:
    rig.contactor.close()
    assert rig.output_closed()
    assert rig.contactor.feedback_closed()
    rig.contactor.open()
    assert not rig.output_closed()
    assert not rig.contactor.feedback_closed()
    rig.contactor.open()  # opening an open contactor is harmless
    assert not rig.output_closed()


def test_release_is_fail_open(rig: ContactorRig) -> None:
    rig.contactor.close()
    rig.contactor.release()
    assert not rig.output_closed()
    assert not rig.contactor.feedback_closed()
