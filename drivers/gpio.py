"""GPIO devices through gpiozero: the contactor enable relay, the fault inputs, LED and buzzer.

Every device takes the pin factory as an argument (gpiozero's `pin_factory=`); the process-wide
default factory is never used, so tests run on `MockFactory` beside real pins without global
state. `make_pin_factory` picks the factory by name from `[hardware.gpio] pin_factory`:
"lgpio" (Raspberry Pi 5, and any Pi with /dev/gpiochip), "rpigpio" (older Pis; RPi.GPIO does
not work on the Pi 5), "mock" (tests, demos) or "emulated" (tests and benches of the daemon in
a process of its own: gpiozero's mock pins on a chip whose line levels outlive the process, see
hardware/emulators/gpio_chip.py).

Safety: the relay output is active-high and starts low (open). The board holds it low with a
pull-down when the Pi resets or the pin is released, so `release()` closes the gpiozero device,
which returns the pin to an input and lets the pull-down open the relay. The relay is only an
*enable* in series with the EVSE controller and the RCD; see docs/architecture.md.

Fault inputs (emergency stop, RCD trip) call their callback from gpiozero's event thread at
the first active edge, with no debounce delay: a bouncing contact only calls it again, and the
receiver must be idempotent (open the contactor, post a fault event). An input that is already
active when the daemon starts gives no edge, so the daemon also asks `active()` at start-up.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, Buzzer, DigitalInputDevice, DigitalOutputDevice, GPIOZeroError

from hardware.ports import ContactorFault, DeviceFault, Tone

# name -> (module, class); imported on demand, since each back-end needs its own library.
PIN_FACTORIES: dict[str, tuple[str, str]] = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
    "emulated": ("hardware.emulators.gpio_chip", "LatchedChipFactory"),
}
BCM_PINS = range(28)  # GPIO0..GPIO27 on the 40-pin header

Pin = int | str


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory called `name` (see module docstring).

    Raises ValueError for an unknown name and DeviceFault when the library or the GPIO chip is
    not there (e.g. "lgpio" on a desktop)."""
    if name not in PIN_FACTORIES:
        raise ValueError(
            f"hardware.gpio.pin_factory: must be one of {sorted(PIN_FACTORIES)}, got {name!r}"
        )
    module_name, class_name = PIN_FACTORIES[name]
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    # Each back-end library raises its own error types (ImportError, lgpio.error,
    # RuntimeError from RPi.GPIO off a Pi); all mean "this factory cannot run here".
    except Exception as exc:
        raise DeviceFault(f"GPIO pin factory {name!r} unavailable: {exc}") from exc


def _check_pin(pin: Pin, key: str) -> None:
    if isinstance(pin, bool) or (isinstance(pin, int) and pin not in BCM_PINS):
        raise ValueError(f"{key}: BCM pin number must be 0..27, got {pin!r}")
    if isinstance(pin, str) and not pin.strip():
        raise ValueError(f"{key}: pin name must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPin:
    """A digital input. With `pull_up` True (internal pull-up, contact to ground) the input is
    active when low; with False (pull-down) active when high; with None (external resistor)
    `active_state` must say which level is active (True = high)."""

    pin: Pin
    pull_up: bool | None = True
    active_state: bool | None = None

    def validate(self, key: str) -> None:
        _check_pin(self.pin, f"{key}.pin")
        if self.pull_up is None and self.active_state is None:
            raise ValueError(f"{key}.active_state: required when pull_up is unset")
        if self.pull_up is not None and self.active_state is not None:
            raise ValueError(f"{key}.active_state: only with pull_up unset (external resistor)")

    def device(self, factory: Any) -> Any:
        return DigitalInputDevice(
            self.pin, pull_up=self.pull_up, active_state=self.active_state, pin_factory=factory
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactorPins:
    """[hardware.gpio.contactor]: relay output (active-high) and auxiliary feedback input."""

    relay_pin: Pin
    feedback: InputPin

    def __post_init__(self) -> None:
        _check_pin(self.relay_pin, "hardware.gpio.contactor.relay_pin")
        self.feedback.validate("hardware.gpio.contactor.feedback")
        if self.relay_pin == self.feedback.pin:
            raise ValueError("hardware.gpio.contactor.feedback.pin: same pin as relay_pin")


class GpioContactor:
    """Implements `hardware.ports.Contactor` on a relay output and a feedback input."""

    def __init__(self, pins: ContactorPins, factory: Any) -> None:
        try:
            self._relay = DigitalOutputDevice(
                pins.relay_pin, active_high=True, initial_value=False, pin_factory=factory
            )
            self._feedback = pins.feedback.device(factory)
        except GPIOZeroError as exc:
            raise ContactorFault(f"contactor pins unusable: {exc}") from exc
        self._released = False

    def open(self) -> None:
        if self._released:
            return  # released means the pull-down holds it open already
        try:
            self._relay.off()
        except GPIOZeroError as exc:
            raise ContactorFault(f"cannot drive relay output open: {exc}") from exc

    def close(self) -> None:
        if self._released:
            raise ContactorFault("contactor output was released")
        try:
            self._relay.on()
        except GPIOZeroError as exc:
            raise ContactorFault(f"cannot drive relay output closed: {exc}") from exc

    def feedback_closed(self) -> bool:
        try:
            return bool(self._feedback.value)
        except GPIOZeroError as exc:
            raise ContactorFault(f"cannot read contactor feedback: {exc}") from exc

    @property
    def commanded_closed(self) -> bool:
        return not self._released and bool(self._relay.value)

    def release(self) -> None:
        """Drive the output low, then give the pin up to the board's pull-down."""
        if self._released:
            return
        self._released = True
        try:
            self._relay.off()
        finally:
            self._relay.close()

    def close_devices(self) -> None:
        """Release the output and the feedback input (teardown)."""
        self.release()
        self._feedback.close()


def drive_low(pin: Pin, factory: Any) -> None:
    """Drive the relay output `pin` low, then give the line back to the board's pull-down.

    For `ev-terminal relay-off`, which systemd runs after the daemon is gone however it ended
    (`ExecStopPost=`): Raspberry Pi OS keeps a dead process's output level, so a SIGKILL or
    a crash would otherwise leave the contactor enabled. Raises ContactorFault if the line
    cannot be driven (e.g. another process still holds it)."""
    _check_pin(pin, "hardware.gpio.contactor.relay_pin")
    try:
        relay = DigitalOutputDevice(pin, active_high=True, initial_value=False, pin_factory=factory)
    except GPIOZeroError as exc:
        raise ContactorFault(f"relay output {pin} unusable: {exc}") from exc
    try:
        relay.off()
    finally:
        relay.close()


class FaultInput(enum.Enum):
    """A hardware safety input."""

    EMERGENCY_STOP = "emergency_stop"
    RCD_TRIP = "rcd_trip"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInputPins:
    """[hardware.gpio.faults]: emergency-stop and RCD-trip inputs. Fail-safe wiring is a
    normally closed contact to ground with an external pull-up and `active_state=True`
    (pull_up None): an opened contact or a broken wire reads high, i.e. active. gpiozero does
    not combine its internal pull-up with an active-high input."""

    emergency_stop: InputPin
    rcd_trip: InputPin

    def __post_init__(self) -> None:
        self.emergency_stop.validate("hardware.gpio.faults.emergency_stop")
        self.rcd_trip.validate("hardware.gpio.faults.rcd_trip")
        if self.emergency_stop.pin == self.rcd_trip.pin:
            raise ValueError("hardware.gpio.faults.rcd_trip.pin: same pin as emergency_stop")


class FaultInputs:
    """Calls `on_fault(which)` at each active edge, from gpiozero's event thread, and
    `on_clear(which)` when an input goes inactive again (if given)."""

    def __init__(
        self,
        pins: FaultInputPins,
        factory: Any,
        on_fault: Callable[[FaultInput], None],
        on_clear: Callable[[FaultInput], None] | None = None,
    ) -> None:
        self._devices: dict[FaultInput, Any] = {}
        for which, pin in (
            (FaultInput.EMERGENCY_STOP, pins.emergency_stop),
            (FaultInput.RCD_TRIP, pins.rcd_trip),
        ):
            device = pin.device(factory)
            device.when_activated = _bind(on_fault, which)
            if on_clear is not None:
                device.when_deactivated = _bind(on_clear, which)
            self._devices[which] = device

    def active(self) -> frozenset[FaultInput]:
        """The inputs active now (for start-up, where no edge arrives)."""
        return frozenset(which for which, device in self._devices.items() if device.is_active)

    def close(self) -> None:
        for device in self._devices.values():
            device.close()


def _bind(callback: Callable[[FaultInput], None], which: FaultInput) -> Callable[[], None]:
    def fire() -> None:
        callback(which)

    return fire


@dataclass(frozen=True, slots=True, kw_only=True)
class IndicatorPins:
    """[hardware.gpio.indicators]: status LED and buzzer outputs (active-high), both optional."""

    led_pin: Pin | None = None
    buzzer_pin: Pin | None = None

    def __post_init__(self) -> None:
        if self.led_pin is not None:
            _check_pin(self.led_pin, "hardware.gpio.indicators.led_pin")
        if self.buzzer_pin is not None:
            _check_pin(self.buzzer_pin, "hardware.gpio.indicators.buzzer_pin")
        if self.led_pin is not None and self.led_pin == self.buzzer_pin:
            raise ValueError("hardware.gpio.indicators.buzzer_pin: same pin as led_pin")


# (LED pattern, beeps): pattern None = steady on, (on_s, off_s) = blink.
TONE_SIGNALS: dict[Tone, tuple[tuple[float, float] | None, int]] = {
    Tone.INFO: (None, 0),
    Tone.BUSY: ((0.5, 0.5), 0),
    Tone.OK: (None, 1),
    Tone.ERROR: ((0.1, 0.1), 3),
}
BEEP_S = 0.08


class StatusIndicators:
    """The status LED and buzzer, driven by a frame's `Tone`. Blinking and beeping run in
    gpiozero's background threads, so `signal` returns at once."""

    def __init__(self, pins: IndicatorPins, factory: Any) -> None:
        self._led = None if pins.led_pin is None else LED(pins.led_pin, pin_factory=factory)
        self._buzzer = (
            None if pins.buzzer_pin is None else Buzzer(pins.buzzer_pin, pin_factory=factory)
        )

    def signal(self, tone: Tone) -> None:
        blink, beeps = TONE_SIGNALS[tone]
        if self._led is not None:
            if blink is None:
                self._led.on()
            else:
                self._led.blink(on_time=blink[0], off_time=blink[1])
        if self._buzzer is not None:
            if beeps:
                self._buzzer.beep(on_time=BEEP_S, off_time=BEEP_S, n=beeps)
            else:
                self._buzzer.off()

    def off(self) -> None:
        for device in (self._led, self._buzzer):
            if device is not None:
                device.off()

    def close(self) -> None:
        for device in (self._led, self._buzzer):
            if device is not None:
                device.close()
