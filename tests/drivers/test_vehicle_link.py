"""Vehicle links: the EVSE-DIN board over Modbus RTU (emulated on a pty) and GPIO inputs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.backoff import Backoff
from drivers.gpio import InputPin
from drivers.vehicle_link import (
    DEFAULT_PILOT_CODES,
    EVSE_DIN_STATES,
    Debouncer,
    EvseDinLink,
    EvseDinSettings,
    GpioPilotLink,
    GpioPilotSettings,
    PolledPilotLink,
)
from hardware.emulators.modbus_devices import EmulatedEvseBoard, ModbusRtuEmulator
from hardware.ports import PilotState, VehicleLinkFault

WAIT_S = 2.0  # upper bound only; changes arrive in milliseconds
PILOT_PINS = (12, 13, 16)


def test_debouncer_confirms_after_n_equal_samples() -> None:
    debouncer = Debouncer(3)
    assert [debouncer.feed(s) for s in [1, 1, 1]] == [None, None, 1]
    assert [debouncer.feed(s) for s in [2, 2, 1, 1, 1]] == [None] * 5  # a glitch is no change
    assert [debouncer.feed(s) for s in [3, 3, 3, 3]] == [None, None, 3, None]
    debouncer.reset()
    assert debouncer.confirmed is None
    assert [debouncer.feed(s) for s in [3, 3, 3]] == [None, None, 3]


@pytest.fixture
def board() -> EmulatedEvseBoard:
    return EmulatedEvseBoard(unit_id=3)


@pytest.fixture
def evse_link(board: EmulatedEvseBoard) -> Iterator[EvseDinLink]:
    with ModbusRtuEmulator(board) as emulator:
        link = EvseDinLink(
            EvseDinSettings(
                port=emulator.port, unit_id=3, baudrate=38400, timeout_s=0.05, confirm_reads=2
            )
        )
        yield link
        link.close()


def test_evse_din_reports_each_change_once(
    evse_link: EvseDinLink, board: EmulatedEvseBoard
) -> None:
    assert evse_link.state() is PilotState.A
    board.set_state(PilotState.B)
    assert evse_link.wait_change(WAIT_S) is PilotState.B
    board.set_state(PilotState.C)
    assert evse_link.wait_change(WAIT_S) is PilotState.C
    assert evse_link.state() is PilotState.C
    assert evse_link.wait_change(0.05) is None
    assert evse_link.wait_change(0) is None


@pytest.mark.parametrize(
    ("value", "state"),
    [(1, PilotState.A), (2, PilotState.B), (3, PilotState.C), (4, PilotState.D), (5, PilotState.F)],
)
def test_evse_din_register_values_map_to_pilot_states(
    evse_link: EvseDinLink, board: EmulatedEvseBoard, value: int, state: PilotState
) -> None:
    evse_link.state()
    board.set_raw_state(value)
    if state is not PilotState.A:
        assert evse_link.wait_change(WAIT_S) is state
    assert evse_link.state() is state


def test_undocumented_register_value_is_a_fault(
    evse_link: EvseDinLink, board: EmulatedEvseBoard
) -> None:
    evse_link.state()
    board.set_raw_state(9)
    with pytest.raises(VehicleLinkFault, match="9 is not a state"):
        evse_link.wait_change(WAIT_S)
    with pytest.raises(VehicleLinkFault):
        evse_link.state()


def test_silent_board_is_reported_once_then_recovers(
    evse_link: EvseDinLink, board: EmulatedEvseBoard
) -> None:
    assert evse_link.state() is PilotState.A
    board.go_silent()
    with pytest.raises(VehicleLinkFault, match="no valid answer"):
        evse_link.wait_change(WAIT_S)
    assert evse_link.wait_change(0.2) is None  # reported once, not at every poll
    board.set_state(PilotState.B)
    board.resume()
    assert evse_link.wait_change(WAIT_S) is PilotState.B


def test_evse_din_settings_keep_the_50_ms_budget() -> None:
    EvseDinSettings(port="/dev/ttyUSB0")  # 9600 baud, one read: about 46 ms worst case
    with pytest.raises(ValueError, match="confirm_reads"):
        EvseDinSettings(port="/dev/ttyUSB0", confirm_reads=2)
    EvseDinSettings(port="/dev/ttyUSB0", baudrate=19200, confirm_reads=2)
    with pytest.raises(ValueError, match="unit_id"):
        EvseDinSettings(port="/dev/ttyUSB0", unit_id=0)


def drive_code(factory: Any, code: int) -> None:
    for index, pin in enumerate(PILOT_PINS):
        bit = (code >> (len(PILOT_PINS) - 1 - index)) & 1
        if bit:
            factory.pin(pin).drive_high()
        else:
            factory.pin(pin).drive_low()


CODE_OF = {state: code for code, state in DEFAULT_PILOT_CODES.items()}


@pytest.fixture
def factory() -> Iterator[Any]:
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def gpio_link(factory: Any) -> Iterator[GpioPilotLink]:
    drive_code(factory, CODE_OF[PilotState.A])
    # push-pull comparator outputs: no pull resistor, active high
    pins = tuple(InputPin(pin=pin, pull_up=None, active_state=True) for pin in PILOT_PINS)
    link = GpioPilotLink(GpioPilotSettings(pins=pins), factory)
    yield link
    link.close()


def test_gpio_pilot_reports_changes_once(gpio_link: GpioPilotLink, factory: Any) -> None:
    assert gpio_link.state() is PilotState.A
    for state in (PilotState.B, PilotState.C, PilotState.D, PilotState.E, PilotState.F):
        drive_code(factory, CODE_OF[state])
        assert gpio_link.wait_change(WAIT_S) is state
    assert gpio_link.wait_change(0.05) is None


def test_gpio_pilot_stuck_inputs_are_a_fault(gpio_link: GpioPilotLink, factory: Any) -> None:
    assert gpio_link.state() is PilotState.A
    drive_code(factory, 0b111)
    with pytest.raises(VehicleLinkFault, match="7 is not a state"):
        gpio_link.wait_change(WAIT_S)


def test_gpio_pilot_settings_are_checked() -> None:
    two = (InputPin(pin=12), InputPin(pin=13))
    with pytest.raises(ValueError, match="codes"):
        GpioPilotSettings(pins=two)
    with pytest.raises(ValueError, match="codes"):
        GpioPilotSettings(pins=two, codes={0b100: PilotState.A})
    GpioPilotSettings(pins=two, codes={0b11: PilotState.A, 0b01: PilotState.B})
    with pytest.raises(ValueError, match="confirm_reads"):
        GpioPilotSettings(pins=(*two, InputPin(pin=16)), poll_interval_s=0.02, confirm_reads=3)
    with pytest.raises(ValueError, match="twice"):
        GpioPilotSettings(pins=(*two, InputPin(pin=12)))


def test_a_board_that_cannot_be_read_is_retried_with_a_bounded_back_off() -> None:
    """A missing port fails at once; the poller must not turn that into a busy loop, and
    must still find the board again when it answers."""
    attempts: list[float] = []
    answering = threading.Event()

    def sample() -> int:
        attempts.append(time.monotonic())
        if not answering.is_set():
            raise VehicleLinkFault("cannot open serial port")
        return 2  # B

    backoff = Backoff(initial_s=0.02, factor=2.0, maximum_s=0.16)
    link = PolledPilotLink(
        sample,
        EVSE_DIN_STATES.get,
        poll_interval_s=0.0,
        confirm_reads=1,
        name="test poller",
        backoff=backoff,
    )
    try:
        with pytest.raises(VehicleLinkFault):
            link.wait_change(1.0)  # the first failure is reported at once
        time.sleep(1.0)
        # 0.02 + 0.04 + 0.08 + 0.16 + 0.16 ... : about 8 attempts a second at most, not thousands.
        assert 3 <= len(attempts) <= 12, len(attempts)
        answering.set()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                assert link.state() is PilotState.B
                break
            except VehicleLinkFault:
                assert time.monotonic() < deadline, "the board was not found again"
                time.sleep(0.02)
    finally:
        link.close()


def settled_state(link: EvseDinLink, want: PilotState, timeout: float = WAIT_S) -> PilotState:
    """The link's state once it is `want`, or the last one seen after `timeout`. A read lost
    on a busy machine (a transient fault, reported once) is not a state and is waited out."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        with contextlib.suppress(VehicleLinkFault):
            seen = evse_state = link.state()
            if evse_state is want:
                return evse_state
        time.sleep(0.02)
    assert seen is not None, "no state read at all"
    return seen


def test_evse_din_offer_and_withdraw_write_the_current_and_the_pwm_off_bit(
    evse_link: EvseDinLink, board: EmulatedEvseBoard
) -> None:
    """Registers 1000 (amperes) and 1004 bit 0 (PWM off), written with function 16; the car
    behind the emulated board answers the PWM as IEC 61851-1 Annex A has it."""
    evse_link.withdraw()
    assert board.writes == [(1004, 1)] and not board.pwm_on
    board.set_state(PilotState.B)
    assert settled_state(evse_link, PilotState.B) is PilotState.B
    board.set_state(PilotState.C)  # a plug-first car asks, but nothing is on offer
    assert board.pilot() is PilotState.B
    assert settled_state(evse_link, PilotState.C, timeout=0.3) is PilotState.B
    evse_link.offer(13)
    assert board.writes[1:] == [(1000, 13), (1004, 0)] and board.current_a == 13
    assert settled_state(evse_link, PilotState.C) is PilotState.C  # the car answers the PWM
    evse_link.offer(8)  # lowered while charging
    assert board.current_a == 8
    evse_link.withdraw()
    assert settled_state(evse_link, PilotState.B) is PilotState.B  # PWM off: the load ends


def test_evse_din_refuses_a_current_the_pilot_cannot_encode(evse_link: EvseDinLink) -> None:
    with pytest.raises(ValueError, match=r"6\.\.80"):
        evse_link.offer(5)
    with pytest.raises(ValueError, match=r"6\.\.80"):
        evse_link.offer(81)


def test_a_board_that_does_not_answer_a_write_is_a_link_fault(
    evse_link: EvseDinLink, board: EmulatedEvseBoard
) -> None:
    board.go_silent()
    with pytest.raises(VehicleLinkFault, match="EVSE board"):
        evse_link.withdraw()
