"""GPIO drivers on gpiozero's MockFactory: relay, feedback, fault inputs, indicators."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import (
    ContactorPins,
    FaultInput,
    FaultInputPins,
    FaultInputs,
    GpioContactor,
    IndicatorPins,
    InputPin,
    StatusIndicators,
    make_pin_factory,
)
from hardware.ports import ContactorFault, DeviceFault, Tone

RELAY, FEEDBACK, ESTOP, RCD, LED_PIN, BUZZER = 17, 27, 5, 6, 22, 23


@pytest.fixture
def factory() -> Iterator[Any]:
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def contactor(factory: Any) -> GpioContactor:
    # Auxiliary contact to ground, internal pull-up: closed contactor reads low.
    pins = ContactorPins(relay_pin=RELAY, feedback=InputPin(pin=FEEDBACK, pull_up=True))
    return GpioContactor(pins, factory)


def test_relay_starts_low(factory: Any, contactor: GpioContactor) -> None:
    assert factory.pin(RELAY).state == 0
    assert not contactor.commanded_closed


def test_relay_output_follows_open_and_close(factory: Any, contactor: GpioContactor) -> None:
    contactor.close()
    assert factory.pin(RELAY).state == 1
    contactor.open()
    assert factory.pin(RELAY).state == 0


def test_feedback_mismatch_is_visible(factory: Any, contactor: GpioContactor) -> None:
    feedback = factory.pin(FEEDBACK)
    assert not contactor.feedback_closed()  # pulled up: aux contact open
    feedback.drive_low()  # aux contact closed while the relay is commanded open: welded
    assert contactor.feedback_closed()
    assert not contactor.commanded_closed


def test_release_gives_the_pin_up_low(factory: Any, contactor: GpioContactor) -> None:
    contactor.close()
    contactor.release()
    relay = factory.pin(RELAY)
    assert relay.state == 0
    assert relay.function == "input"
    contactor.open()  # opening a released contactor is harmless
    with pytest.raises(ContactorFault):
        contactor.close()


def test_relay_pin_in_use_is_a_contactor_fault(factory: Any, contactor: GpioContactor) -> None:
    pins = ContactorPins(relay_pin=RELAY, feedback=InputPin(pin=FEEDBACK - 1))
    with pytest.raises(ContactorFault):
        GpioContactor(pins, factory)


def fault_pins() -> FaultInputPins:
    return FaultInputPins(
        emergency_stop=InputPin(pin=ESTOP, pull_up=True),
        rcd_trip=InputPin(pin=RCD, pull_up=None, active_state=True),
    )


def test_fault_edges_fire_the_callback_at_once(factory: Any) -> None:
    faults: list[FaultInput] = []
    cleared: list[FaultInput] = []
    inputs = FaultInputs(fault_pins(), factory, faults.append, cleared.append)
    factory.pin(RCD).drive_low()
    assert inputs.active() == frozenset()
    factory.pin(ESTOP).drive_low()  # pull-up: pressing the button pulls it low
    assert faults == [FaultInput.EMERGENCY_STOP]
    factory.pin(RCD).drive_high()  # external resistor, active high
    assert faults == [FaultInput.EMERGENCY_STOP, FaultInput.RCD_TRIP]
    assert inputs.active() == {FaultInput.EMERGENCY_STOP, FaultInput.RCD_TRIP}
    factory.pin(ESTOP).drive_high()
    assert cleared == [FaultInput.EMERGENCY_STOP]
    inputs.close()


def test_rcd_trip_opens_the_contactor_through_the_callback(
    factory: Any, contactor: GpioContactor
) -> None:
    inputs = FaultInputs(fault_pins(), factory, lambda _which: contactor.open())
    factory.pin(RCD).drive_low()
    contactor.close()
    factory.pin(RCD).drive_high()
    assert factory.pin(RELAY).state == 0
    inputs.close()


def wait_until(condition: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        event.wait(0.005)
    return True


def test_indicators_follow_the_tone(factory: Any) -> None:
    indicators = StatusIndicators(IndicatorPins(led_pin=LED_PIN, buzzer_pin=BUZZER), factory)
    led, buzzer = factory.pin(LED_PIN), factory.pin(BUZZER)
    indicators.signal(Tone.INFO)
    assert led.state == 1
    assert buzzer.state == 0
    buzzer.clear_states()
    indicators.signal(Tone.OK)  # one short beep in the background
    assert wait_until(lambda: [s.state for s in buzzer.states][-2:] == [True, False])
    indicators.off()
    assert led.state == 0
    indicators.close()


def test_pin_factory_is_chosen_by_name() -> None:
    mock = make_pin_factory("mock")
    assert isinstance(mock, MockFactory)
    mock.close()
    with pytest.raises(ValueError, match=r"hardware\.gpio\.pin_factory"):
        make_pin_factory("sysfs")


def test_unavailable_pin_factory_is_a_device_fault() -> None:
    with pytest.raises(DeviceFault, match="rpigpio"):
        make_pin_factory("rpigpio")  # RPi.GPIO runs on a Raspberry Pi only


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: ContactorPins(relay_pin=40, feedback=InputPin(pin=27)), "relay_pin"),
        (lambda: ContactorPins(relay_pin=17, feedback=InputPin(pin=17)), "feedback.pin"),
        (
            lambda: ContactorPins(relay_pin=17, feedback=InputPin(pin=27, pull_up=None)),
            "feedback.active_state",
        ),
        (
            lambda: FaultInputPins(emergency_stop=InputPin(pin=5), rcd_trip=InputPin(pin=5)),
            "rcd_trip.pin",
        ),
        (lambda: IndicatorPins(led_pin=22, buzzer_pin=22), "buzzer_pin"),
    ],
)
def test_bad_pin_settings_name_the_key(build: Any, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        build()
