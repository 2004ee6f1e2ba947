"""The one function that turns the `[hardware]` section into device objects.

`backend = "sim"` builds the simulator (for a bench or a demo kiosk without hardware);
`backend = "pi"` builds the real drivers (nfcpy reader, Modbus meter and EVSE board, gpiozero
relay and inputs, display renderers, watchdog). Every key is documented in docs/drivers.md
and deploy/terminal.toml.

Two steps: `pi_settings` reads and validates the keys into the drivers' frozen settings
(opening nothing, so `check-config` can run it anywhere), and `build_pi_devices` builds the
devices from them. Unknown keys and bad values are `ConfigError`s naming the full key; the
drivers' own `ValueError("hardware.meter.unit_id: ...")` become `ConfigError`s too.

Fault inputs (emergency stop, RCD trip): the input's callback, in the pin factory's event
thread, opens the relay at once (the fastest path, without waiting for the daemon's queue)
and latches an interlock that keeps the relay from closing while any input is active; then it
tells the daemon through the `FaultSink` in `Devices.faults`, which the service connects to
`daemon.post` once the daemon is built. An input already active at start-up is reported the
same way. The daemon's machine then ends the session, shows the fault and reports it.

Build order: the pin factory and the relay first (driven low at once), then the fault inputs,
indicators, meter, vehicle link, reader, display, and the watchdog last (built, not armed: the
daemon arms it once it has started, just before READY). If any step fails, what was built is
closed again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from drivers.display_lcd import Hd44780Lcd, LcdSettings
from drivers.display_web import WebDisplay, WebDisplaySettings
from drivers.gpio import (
    PIN_FACTORIES,
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
from drivers.modbus_meter import ModbusMeter, ModbusMeterSettings
from drivers.modbus_rtu import RtuBus
from drivers.nfc_reader import NfcReader, resolve_port
from drivers.vehicle_link import EvseDinLink, EvseDinSettings, GpioPilotLink, GpioPilotSettings
from drivers.watchdog import LinuxWatchdog, WatchdogSettings
from hardware.clock import Clock
from hardware.ports import Display, Frame, PilotState
from terminal.config import Config, HardwareConfig
from terminal.core.screens import Starting, frames_for
from terminal.errors import ConfigError
from terminal.i18n import station_words
from terminal.shell.devices import Devices
from terminal.shell.fault_sink import FaultSink
from terminal.station import SimHardware

log = logging.getLogger("ev_terminal.wiring")

LINE_KEYS = ("baudrate", "parity", "stopbits", "timeout_s", "retries")


def build_devices(config: Config, clock: Clock, *, pin_factory: Any | None = None) -> Devices:
    """The devices the `[hardware]` section names. `pin_factory` replaces the configured
    gpiozero factory (tests and benches drive a `MockFactory` they hold)."""
    if config.hardware.backend == "sim":
        return SimHardware.build(clock).devices()
    return build_pi_devices(
        pi_settings(config.hardware),
        clock,
        pin_factory=pin_factory,
        starting=starting_frame(config),
    )


def starting_frame(config: Config) -> Frame:
    """The frame a display shows before the daemon's first, in the station's language with
    the others as variants (the drivers cannot read the catalogs, so it is rendered here)."""
    first, every = station_words(config.station.language, ZoneInfo(config.station.timezone))
    return frames_for(Starting(), first, every)


# -- reading and validating the keys -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PiSettings:
    """Every driver's settings for the pi backend, validated."""

    reader: str
    meter: ModbusMeterSettings
    vehicle: EvseDinSettings | GpioPilotSettings
    pin_factory: str
    contactor: ContactorPins
    faults: FaultInputPins
    indicators: IndicatorPins
    display: WebDisplaySettings | LcdSettings
    watchdog: WatchdogSettings | None

    @property
    def shared_line(self) -> bool:
        """Meter and EVSE board on one RS-485 line (one serial port, one bus)."""
        return isinstance(self.vehicle, EvseDinSettings) and self.vehicle.port == self.meter.port


class _Table:
    """One TOML table of the [hardware] section; remembers which keys were read."""

    def __init__(self, raw: Any, name: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(name, "must be a table")
        self.raw: dict[str, Any] = raw
        self.name = name
        self.used: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def value(self, key: str, kinds: tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is ...:
                raise ConfigError(self.key(key), "missing")
            return default
        value = self.raw[key]
        # TOML booleans are not numbers here, and an integer is a fine number of seconds.
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            names = " or ".join(_KIND_NAMES[kind] for kind in kinds)
            raise ConfigError(self.key(key), f"must be {names}, got {value!r}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        return str(self.value(key, (str,), default))

    def integer(self, key: str, default: Any = ...) -> int:
        return int(self.value(key, (int,), default))

    def seconds(self, key: str, default: Any = ...) -> float:
        return float(self.value(key, (int, float), default))

    def flag(self, key: str, default: Any = ...) -> bool:
        return bool(self.value(key, (bool,), default))

    def table(self, key: str, *, required: bool = True) -> _Table | None:
        self.used.add(key)
        if key not in self.raw:
            if required:
                raise ConfigError(self.key(key), "missing table")
            return None
        return _Table(self.raw[key], self.key(key))

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


@contextlib.contextmanager
def _driver_rules(section: str) -> Iterator[None]:
    """A driver settings' ValueError ("hardware.meter.unit_id: must be ...") as ConfigError."""
    try:
        yield
    except ValueError as exc:
        key, sep, problem = str(exc).partition(": ")
        if not sep or not key.startswith("hardware."):
            key, problem = section, str(exc)
        raise ConfigError(key, problem) from None


def pi_settings(hardware: HardwareConfig) -> PiSettings:
    """Read and validate the pi backend's keys (see docs/drivers.md). Opens nothing."""
    if hardware.backend != "pi":
        raise ConfigError("hardware.backend", "the driver settings are for the pi backend")
    root = _Table(dict(hardware.settings), "hardware")
    root.used.add("backend")

    reader = root.text("reader")
    try:
        resolve_port(reader)
    except ValueError as exc:
        raise ConfigError("hardware.reader", str(exc)) from None

    meter_table = root.table("meter")
    assert meter_table is not None
    meter = _meter(meter_table)
    vehicle_table = root.table("vehicle")
    assert vehicle_table is not None
    gpio = root.table("gpio")
    assert gpio is not None
    pin_factory = gpio.text("pin_factory", "lgpio")
    if pin_factory not in PIN_FACTORIES:
        raise ConfigError(gpio.key("pin_factory"), f"must be one of {sorted(PIN_FACTORIES)}")
    vehicle = _vehicle(vehicle_table)
    contactor, faults, indicators = _gpio(gpio)
    display_table = root.table("display", required=False)
    display = _display(display_table or _Table({}, "hardware.display"))
    # The hardware watchdog is on unless switched off (a bench without one): it is the layer
    # that resets a Pi whose daemon hangs with the relay enabled.
    watchdog_table = root.table("watchdog", required=False) or _Table({}, "hardware.watchdog")
    with _driver_rules("hardware.watchdog"):
        watchdog_settings = WatchdogSettings(
            path=watchdog_table.text("path", "/dev/watchdog"),
            enabled=watchdog_table.flag("enabled", True),
        )
    watchdog_table.finish()
    watchdog = watchdog_settings if watchdog_settings.enabled else None
    root.finish()

    settings = PiSettings(
        reader=reader,
        meter=meter,
        vehicle=vehicle,
        pin_factory=pin_factory,
        contactor=contactor,
        faults=faults,
        indicators=indicators,
        display=display,
        watchdog=watchdog,
    )
    _check_pins_unique(settings)
    if settings.shared_line:
        assert isinstance(vehicle, EvseDinSettings)
        _check_shared_line(meter, vehicle)
    return settings


def _line(table: _Table, defaults: dict[str, Any]) -> dict[str, Any]:
    return {
        "port": table.text("port"),
        "unit_id": table.integer("unit_id", 1),
        "baudrate": table.integer("baudrate", 9600),
        "parity": table.text("parity", "N"),
        "stopbits": table.integer("stopbits", 1),
        "timeout_s": table.seconds("timeout_s", defaults["timeout_s"]),
        "retries": table.integer("retries", defaults["retries"]),
    }


def _meter(table: _Table) -> ModbusMeterSettings:
    with _driver_rules(table.name):
        settings = ModbusMeterSettings(
            **_line(table, {"timeout_s": 0.5, "retries": 2}),
            model=table.text("model", "sdm630"),
            meter_id=table.value("meter_id", (str,), ""),
        )
    table.finish()
    return settings


def _vehicle(table: _Table) -> EvseDinSettings | GpioPilotSettings:
    kind = table.text("kind")
    settings: EvseDinSettings | GpioPilotSettings
    if kind == "evse-din":
        with _driver_rules(table.name):
            settings = EvseDinSettings(
                **_line(table, {"timeout_s": 0.1, "retries": 1}),
                poll_interval_s=table.seconds("poll_interval_s", 0.0),
                confirm_reads=table.integer("confirm_reads", 1),
            )
    elif kind == "gpio":
        raw_pins = table.value("pins", (list,))
        pins = tuple(
            _input_pin(value, f"{table.name}.pins[{index}]") for index, value in enumerate(raw_pins)
        )
        codes_table = table.table("codes", required=False)
        codes = None if codes_table is None else _pilot_codes(codes_table)
        with _driver_rules(table.name):
            settings = GpioPilotSettings(
                pins=pins,
                codes=codes,
                poll_interval_s=table.seconds("poll_interval_s", 0.005),
                confirm_reads=table.integer("confirm_reads", 3),
            )
    else:
        raise ConfigError(table.key("kind"), f'must be "evse-din" or "gpio", got {kind!r}')
    table.finish()
    return settings


def _pilot_codes(table: _Table) -> dict[int, PilotState]:
    """`codes = { A = 1, B = 2, C = 3 }`: the input code (first pin most significant) that
    means each state; states not listed read as a fault."""
    codes: dict[int, PilotState] = {}
    for name in list(table.raw):
        if name not in PilotState.__members__:
            raise ConfigError(table.key(name), "not a control-pilot state (A..F)")
        code = table.integer(name)
        if code in codes:
            raise ConfigError(table.key(name), f"code {code} is already {codes[code].value}")
        codes[code] = PilotState[name]
    return codes


def _input_pin(raw: Any, key: str) -> InputPin:
    """A pin number (internal pull-up, active low) or `{ pin, pull_up, active_state }`:
    `pull_up = false` is a pull-down (active high); `active_state` alone (no pull_up) is an
    external resistor, true meaning active high."""
    if isinstance(raw, int | str) and not isinstance(raw, bool):
        pin = InputPin(pin=raw)
    else:
        table = _Table(raw, key)
        number = table.value("pin", (int, str))
        active_state = table.value("active_state", (bool,), None)
        pull_up = table.value("pull_up", (bool,), None if active_state is not None else True)
        table.finish()
        pin = InputPin(pin=number, pull_up=pull_up, active_state=active_state)
    with _driver_rules(key):
        pin.validate(key)
    return pin


def _gpio(table: _Table) -> tuple[ContactorPins, FaultInputPins, IndicatorPins]:
    contactor_table = table.table("contactor")
    faults_table = table.table("faults")
    assert contactor_table is not None and faults_table is not None
    with _driver_rules(contactor_table.name):
        contactor = ContactorPins(
            relay_pin=contactor_table.value("relay_pin", (int, str)),
            feedback=_input_pin(
                contactor_table.value("feedback", (int, str, dict)),
                contactor_table.key("feedback"),
            ),
        )
    contactor_table.finish()
    with _driver_rules(faults_table.name):
        faults = FaultInputPins(
            emergency_stop=_input_pin(
                faults_table.value("emergency_stop", (int, str, dict)),
                faults_table.key("emergency_stop"),
            ),
            rcd_trip=_input_pin(
                faults_table.value("rcd_trip", (int, str, dict)), faults_table.key("rcd_trip")
            ),
        )
    faults_table.finish()
    indicators_table = table.table("indicators", required=False)
    indicators = IndicatorPins()
    if indicators_table is not None:
        with _driver_rules(indicators_table.name):
            indicators = IndicatorPins(
                led_pin=indicators_table.value("led_pin", (int, str), None),
                buzzer_pin=indicators_table.value("buzzer_pin", (int, str), None),
            )
        indicators_table.finish()
    table.finish()
    return contactor, faults, indicators


def _display(table: _Table) -> WebDisplaySettings | LcdSettings:
    kind = table.text("kind", "web")
    settings: WebDisplaySettings | LcdSettings
    with _driver_rules(table.name):
        if kind == "web":
            settings = WebDisplaySettings(
                host=table.text("host", "127.0.0.1"), port=table.integer("port", 8090)
            )
        elif kind == "lcd":
            settings = LcdSettings(
                bus=table.integer("bus", 1),
                address=table.integer("address", 0x27),
                backlight=table.flag("backlight", True),
            )
        else:
            raise ConfigError(table.key("kind"), f'must be "web" or "lcd", got {kind!r}')
    table.finish()
    return settings


def _check_pins_unique(settings: PiSettings) -> None:
    seen: dict[int | str, str] = {}
    uses = [
        ("hardware.gpio.contactor.relay_pin", settings.contactor.relay_pin),
        ("hardware.gpio.contactor.feedback", settings.contactor.feedback.pin),
        ("hardware.gpio.faults.emergency_stop", settings.faults.emergency_stop.pin),
        ("hardware.gpio.faults.rcd_trip", settings.faults.rcd_trip.pin),
        ("hardware.gpio.indicators.led_pin", settings.indicators.led_pin),
        ("hardware.gpio.indicators.buzzer_pin", settings.indicators.buzzer_pin),
    ]
    if isinstance(settings.vehicle, GpioPilotSettings):
        pins = settings.vehicle.pins
        uses += [(f"hardware.vehicle.pins[{i}]", pin.pin) for i, pin in enumerate(pins)]
    for key, pin in uses:
        if pin is None:
            continue
        if pin in seen:
            raise ConfigError(key, f"pin {pin} is already used by {seen[pin]}")
        seen[pin] = key


def _check_shared_line(meter: ModbusMeterSettings, vehicle: EvseDinSettings) -> None:
    """One serial port is one bus with one set of line settings; units must differ."""
    if vehicle.unit_id == meter.unit_id:
        raise ConfigError(
            "hardware.vehicle.unit_id", "the EVSE board shares the meter's line: use another id"
        )
    for key in LINE_KEYS:
        if getattr(vehicle, key) != getattr(meter, key):
            raise ConfigError(
                f"hardware.vehicle.{key}",
                f"the EVSE board shares the meter's line (same port), so it must equal "
                f"hardware.meter.{key} ({getattr(meter, key)!r})",
            )


# -- building the devices ------------------------------------------------------------------


class FaultInterlock:
    """The fault inputs' fast path, and the relay's guard while an input is active.

    `on_fault` runs in the pin factory's event thread: it latches the input, opens the relay,
    and only then tells the daemon. `close` on the guarded contactor is refused (the relay
    stays open, nothing is raised) while any input is active, so a close the machine issued
    just before the edge reached it cannot re-close the relay; the fault event is already on
    its way to the machine."""

    def __init__(self, contactor: GpioContactor, sink: FaultSink) -> None:
        self._contactor = contactor
        self._sink = sink
        self._lock = threading.Lock()
        self._active: set[FaultInput] = set()

    def on_fault(self, which: FaultInput) -> None:
        with self._lock:
            self._active.add(which)
            try:
                self._contactor.open()
            except Exception:  # still tell the daemon; it opens again and raises its own fault
                log.exception("event=fault_input_open_failed input=%s", which.value)
        self._sink.raised(which.value)

    def on_clear(self, which: FaultInput) -> None:
        with self._lock:
            self._active.discard(which)
        self._sink.cleared(which.value)

    @property
    def active(self) -> frozenset[FaultInput]:
        with self._lock:
            return frozenset(self._active)

    # -- the Contactor port, guarded ---------------------------------------------------------
    def open(self) -> None:
        self._contactor.open()

    def close(self) -> None:
        with self._lock:
            if self._active:
                log.warning(
                    "event=contactor_close_refused inputs=%s",
                    ",".join(sorted(w.value for w in self._active)),
                )
                return
            self._contactor.close()

    def feedback_closed(self) -> bool:
        return self._contactor.feedback_closed()

    def release(self) -> None:
        self._contactor.release()


class SignalledDisplay:
    """A display whose frames also drive the status LED and buzzer (by the frame's tone)."""

    def __init__(self, display: Display, indicators: StatusIndicators) -> None:
        self.display = display
        self._indicators = indicators

    def show(self, frame: Frame) -> None:
        self.display.show(frame)
        try:
            self._indicators.signal(frame.tone)
        except Exception:  # the port's contract: show never raises
            log.exception("event=indicators_failed")


def build_pi_devices(
    settings: PiSettings,
    clock: Clock,
    *,
    pin_factory: Any | None = None,
    starting: Frame | None = None,
) -> Devices:
    """Build the real drivers from validated settings (see the module docstring); a web
    display shows `starting` until the daemon's first frame."""
    with contextlib.ExitStack() as stack:
        factory = pin_factory if pin_factory is not None else make_pin_factory(settings.pin_factory)
        if pin_factory is None:
            stack.callback(factory.close)
        relay = GpioContactor(settings.contactor, factory)
        stack.callback(relay.close_devices)
        sink = FaultSink(clock)
        interlock = FaultInterlock(relay, sink)
        inputs = FaultInputs(settings.faults, factory, interlock.on_fault, interlock.on_clear)
        stack.callback(inputs.close)
        for which in sorted(inputs.active(), key=lambda w: w.value):
            log.error("event=fault_input_active_at_start input=%s", which.value)
            interlock.on_fault(which)
        indicators = StatusIndicators(settings.indicators, factory)
        stack.callback(indicators.close)

        bus = RtuBus(settings.meter.rtu()) if settings.shared_line else None
        if bus is not None:
            stack.callback(bus.close)
        meter = ModbusMeter(settings.meter, bus=bus)
        stack.callback(meter.close)
        vehicle: EvseDinLink | GpioPilotLink
        if isinstance(settings.vehicle, EvseDinSettings):
            vehicle = EvseDinLink(settings.vehicle, bus=bus)
        else:
            vehicle = GpioPilotLink(settings.vehicle, factory)
        stack.callback(vehicle.close)
        reader = NfcReader(settings.reader)
        stack.callback(reader.close)
        screen: WebDisplay | Hd44780Lcd
        if isinstance(settings.display, WebDisplaySettings):
            screen = WebDisplay(settings.display, starting=starting)
        else:
            screen = Hd44780Lcd(settings.display)
        stack.callback(screen.close)
        watchdog = None if settings.watchdog is None else LinuxWatchdog(settings.watchdog)
        teardown: Callable[[], None] = stack.pop_all().close
    log.info(
        "event=devices_built reader=%s meter=%s vehicle=%s display=%s watchdog=%s",
        reader.port,
        settings.meter.port,
        type(vehicle).__name__,
        type(screen).__name__,
        settings.watchdog.path if settings.watchdog else "none",
    )
    return Devices(
        reader=reader,
        contactor=interlock,
        meter=meter,
        vehicle=vehicle,
        display=SignalledDisplay(screen, indicators),
        watchdog=watchdog,
        faults=sink,
        teardown=teardown,
    )
