"""The pi backend's wiring: every key of [hardware] read and checked with errors naming the full
key, and the devices built from them (mock pins, emulated Modbus devices): the fault inputs open
the relay in their own callback and reach the daemon through the fault sink."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from drivers.display_web import WebDisplay, WebDisplaySettings
from drivers.modbus_meter import ModbusMeter
from drivers.vehicle_link import EvseDinSettings, GpioPilotSettings
from hardware.clock import ManualClock
from hardware.emulators.modbus_devices import EmulatedEvseBoard, EmulatedSdmMeter, ModbusRtuEmulator
from hardware.ports import Frame, PilotState, Tone
from launcher.cli import main as cli_main
from terminal.config import Config, parse
from terminal.core.events import Event, FaultCleared, FaultRaised
from terminal.errors import ConfigError
from terminal.station import build_rules, build_tariff, sim_keys
from terminal.wiring import FaultInterlock, SignalledDisplay, build_devices, pi_settings
from tests.drivers.pi_config import EXAMPLE, example_pi_data, example_pi_toml

pytestmark = pytest.mark.timeout(60)

RELAY, FEEDBACK, ESTOP, RCD, LED_PIN, BUZZER = 17, 27, 5, 6, 22, 23


def load(data: dict[str, Any]) -> Config:
    return parse(data, base=EXAMPLE.parent)


def test_the_documented_pi_example_is_valid() -> None:
    config = load(example_pi_data())
    settings = pi_settings(config.hardware)
    assert settings.reader == "tty:AMA0:pn532"
    assert settings.meter.port == "/dev/ttyUSB0"
    assert settings.meter.model == "sdm630"
    assert isinstance(settings.vehicle, EvseDinSettings)
    assert settings.vehicle.port == "/dev/ttyUSB1"
    assert not settings.shared_line
    assert settings.pin_factory == "lgpio"
    assert settings.contactor.relay_pin == RELAY
    assert settings.contactor.feedback.pin == FEEDBACK
    assert settings.faults.emergency_stop.pin == ESTOP
    assert settings.faults.emergency_stop.pull_up is None
    assert settings.faults.emergency_stop.active_state is True
    assert settings.faults.rcd_trip.pin == RCD
    assert settings.indicators.led_pin == LED_PIN
    assert settings.display == WebDisplaySettings(host="127.0.0.1", port=8090)
    assert settings.watchdog is not None and settings.watchdog.path == "/dev/watchdog"


def test_check_config_accepts_the_pi_example_with_its_keys(tmp_path: Path, capsys: Any) -> None:
    key_dir, _ = sim_keys(tmp_path / "data", "example")
    path = tmp_path / "terminal.toml"
    path.write_text(
        example_pi_toml().replace('# keys_dir = "keys"', f'keys_dir = "{key_dir}"', 1),
        encoding="utf-8",
    )
    assert cli_main(["check-config", str(path)]) == 0
    assert "backend pi" in capsys.readouterr().out


def test_check_config_names_a_bad_driver_key(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "terminal.toml"
    path.write_text(example_pi_toml().replace("unit_id = 1 ", "unit_id = 300 ", 1))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["check-config", str(path)])
    assert exit_info.value.code == 2
    assert "hardware.meter.unit_id" in capsys.readouterr().err


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    table = data
    for part in path:
        table = table.setdefault(part, {})
    if value is _DELETE:
        del table[last]
    else:
        table[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "key"),
    [
        ("hardware.colour", "red", "hardware.colour"),
        ("hardware.reader", "usb:054c:06c3", "hardware.reader"),
        ("hardware.reader", _DELETE, "hardware.reader"),
        ("hardware.meter.unit_id", 0, "hardware.meter.unit_id"),
        ("hardware.meter.unit_id", "1", "hardware.meter.unit_id"),
        ("hardware.meter.model", "sdm120", "hardware.meter.model"),
        ("hardware.meter.baudrate", 9601, "hardware.meter.baudrate"),
        ("hardware.meter.port", "ttyUSB0", "hardware.meter.port"),
        ("hardware.meter.timeout_s", True, "hardware.meter.timeout_s"),
        ("hardware.meter.speed", 1, "hardware.meter.speed"),
        ("hardware.meter", _DELETE, "hardware.meter"),
        ("hardware.vehicle.kind", "can", "hardware.vehicle.kind"),
        ("hardware.vehicle.confirm_reads", 4, "hardware.vehicle.confirm_reads"),
        ("hardware.vehicle.poll_interval_s", 1, "hardware.vehicle.poll_interval_s"),
        ("hardware.gpio.pin_factory", "pigpio", "hardware.gpio.pin_factory"),
        ("hardware.gpio.contactor.relay_pin", 40, "hardware.gpio.contactor.relay_pin"),
        ("hardware.gpio.contactor.relay_pin", _DELETE, "hardware.gpio.contactor.relay_pin"),
        ("hardware.gpio.contactor.feedback", {"pin": 27, "pull": "up"}, "feedback.pull"),
        (
            "hardware.gpio.contactor.feedback",
            {"pin": 27, "pull_up": True, "active_state": True},
            "hardware.gpio.contactor.feedback.active_state",
        ),
        ("hardware.gpio.faults.rcd_trip", 5, "hardware.gpio.faults.rcd_trip.pin"),
        (
            "hardware.gpio.faults.rcd_trip",
            {"pin": 6, "active_state": "high"},
            "hardware.gpio.faults.rcd_trip.active_state",
        ),
        ("hardware.gpio.faults.rcd_trip", 17, "hardware.gpio.faults.rcd_trip"),
        ("hardware.gpio.indicators.led_pin", 27, "hardware.gpio.indicators.led_pin"),
        ("hardware.display.kind", "eink", "hardware.display.kind"),
        ("hardware.display.host", "0.0.0.0", "hardware.display.host"),
        ("hardware.display.port", 70000, "hardware.display.port"),
        ("hardware.display.address", 0x27, "hardware.display.address"),
        ("hardware.watchdog.path", "watchdog", "hardware.watchdog.path"),
        ("hardware.watchdog.timeout", 15, "hardware.watchdog.timeout"),
    ],
)
def test_a_bad_key_is_named_in_full(dotted: str, value: Any, key: str) -> None:
    data = example_pi_data()
    _set(data, dotted, value)
    with pytest.raises(ConfigError) as error:
        load(data)
    assert key in error.value.key, str(error.value)


def test_lcd_display_keys() -> None:
    data = example_pi_data()
    data["hardware"]["display"] = {"kind": "lcd", "bus": 1, "address": 0x3F}
    settings = pi_settings(load(data).hardware)
    assert settings.display.address == 0x3F  # type: ignore[union-attr]


def test_gpio_vehicle_keys_with_codes() -> None:
    data = example_pi_data()
    data["hardware"]["vehicle"] = {
        "kind": "gpio",
        "pins": [{"pin": 12, "pull_up": False}, 13],
        "codes": {"A": 1, "B": 2, "C": 3},
        "confirm_reads": 2,
    }
    settings = pi_settings(load(data).hardware)
    assert isinstance(settings.vehicle, GpioPilotSettings)
    assert settings.vehicle.pins[0].pull_up is False
    assert dict(settings.vehicle.pilot_codes()) == {
        1: PilotState.A,
        2: PilotState.B,
        3: PilotState.C,
    }


def test_the_kiosk_drives_the_pwm_on_the_evse_board_and_only_reads_a_gpio_pilot() -> None:
    """A normal stop waits for C->B only where the kiosk can turn the PWM off."""
    data = example_pi_data()
    config = load(data)
    assert build_rules(config, build_tariff(config)).pwm_control
    data["hardware"]["vehicle"] = {"kind": "gpio", "pins": [12, 13, 16]}
    config = load(data)
    assert not build_rules(config, build_tariff(config)).pwm_control


@pytest.mark.parametrize(
    ("vehicle", "key"),
    [
        ({"pins": [12, 13]}, "hardware.vehicle.codes"),
        ({"pins": [12, 13], "codes": {"A": 1, "X": 2}}, "hardware.vehicle.codes.X"),
        ({"pins": [12, 13], "codes": {"A": 1, "C": 1}}, "hardware.vehicle.codes.C"),
        ({"pins": [12, 17, 13]}, "hardware.vehicle.pins[1]"),
        ({"pins": [12, {"pin": 13, "pull_up": 1}]}, "hardware.vehicle.pins[1].pull_up"),
    ],
)
def test_gpio_vehicle_errors(vehicle: dict[str, Any], key: str) -> None:
    data = example_pi_data()
    data["hardware"]["vehicle"] = {"kind": "gpio", **vehicle}
    with pytest.raises(ConfigError) as error:
        load(data)
    assert error.value.key == key, str(error.value)


def test_a_shared_rs485_line_needs_equal_line_settings_and_distinct_units() -> None:
    data = example_pi_data()
    data["hardware"]["vehicle"]["port"] = "/dev/ttyUSB0"
    with pytest.raises(ConfigError, match=r"hardware\.vehicle\.unit_id"):
        load(data)
    data["hardware"]["vehicle"]["unit_id"] = 2
    with pytest.raises(ConfigError, match=r"hardware\.vehicle\.timeout_s"):
        load(data)
    data["hardware"]["vehicle"].update(timeout_s=0.5, retries=2)
    data["hardware"]["vehicle"]["confirm_reads"] = 1
    assert pi_settings(load(data).hardware).shared_line


# -- building the devices on emulated hardware -----------------------------------------------


class Posted:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 2.0) -> list[Event]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


@pytest.fixture
def emulated() -> Iterator[tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard]]:
    meter = EmulatedSdmMeter(model="sdm630", unit_id=1, energy_wh=1_000_000, power_w=0)
    board = EmulatedEvseBoard(unit_id=2, state=PilotState.A)
    with ModbusRtuEmulator(meter, board) as emulator:
        yield emulator, meter, board


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    feedback = factory.pin(FEEDBACK)
    factory.pin(RELAY, pin_class=MockConnectedPin, input_pin=feedback)
    yield factory
    factory.close()


def emulated_config(port: str) -> Config:
    data = example_pi_data()
    hw = data["hardware"]
    line = {"port": port, "baudrate": 38400, "timeout_s": 0.2, "retries": 1}
    hw["meter"].update(line, unit_id=1)
    hw["vehicle"].update(line, unit_id=2, poll_interval_s=0.005)
    hw["gpio"]["contactor"]["feedback"] = {"pin": FEEDBACK, "active_state": True}
    hw["display"]["port"] = 0
    hw["watchdog"] = {"enabled": False}  # no /dev/watchdog here
    return load(data)


def test_build_on_emulated_devices_shares_the_rs485_line(
    emulated: tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard], factory: MockFactory
) -> None:
    emulator, _meter, board = emulated
    devices = build_devices(emulated_config(emulator.port), ManualClock(), pin_factory=factory)
    try:
        assert factory.pin(RELAY).state == 0  # built open
        assert devices.vehicle.state() is PilotState.A
        board.set_state(PilotState.B)
        assert devices.vehicle.wait_change(1.0) is PilotState.B
        # The meter gets the line while the EVSE board is polled all the time.
        started = time.monotonic()
        for _ in range(10):
            assert devices.meter.read().energy_wh == 1_000_000
        assert time.monotonic() - started < 2.0
        assert isinstance(devices.meter, ModbusMeter)
        assert devices.faults is not None
    finally:
        devices.close()
    assert factory.pin(RELAY).function == "input"  # given back to the board's pull-down


def test_fault_input_opens_the_relay_in_its_callback_then_reaches_the_daemon(
    emulated: tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard], factory: MockFactory
) -> None:
    emulator, _, _ = emulated
    devices = build_devices(emulated_config(emulator.port), ManualClock(), pin_factory=factory)
    try:
        posted = Posted()
        assert devices.faults is not None
        devices.faults.connect(posted)
        devices.contactor.close()
        assert factory.pin(RELAY).state == 1
        assert devices.contactor.feedback_closed()
        factory.pin(RCD).drive_high()  # the RCD trips: its NC contact opens, the pull-up wins
        assert factory.pin(RELAY).state == 0  # already open when the callback returned
        (event,) = posted.wait_for(1)
        assert isinstance(event, FaultRaised) and event.fault == "rcd_trip"
        devices.contactor.close()  # the machine's close, raced by the edge: refused
        assert factory.pin(RELAY).state == 0
        factory.pin(RCD).drive_low()
        cleared = posted.wait_for(2)[1]
        assert isinstance(cleared, FaultCleared) and cleared.fault == "rcd_trip"
        devices.contactor.close()
        assert factory.pin(RELAY).state == 1
    finally:
        devices.close()


def test_an_input_active_at_start_is_reported_when_the_daemon_connects(
    emulated: tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard], factory: MockFactory
) -> None:
    emulator, _, _ = emulated
    factory.pin(ESTOP).drive_high()  # pressed before the daemon started
    devices = build_devices(emulated_config(emulator.port), ManualClock(), pin_factory=factory)
    try:
        assert isinstance(devices.contactor, FaultInterlock)
        devices.contactor.close()
        assert factory.pin(RELAY).state == 0
        posted = Posted()
        assert devices.faults is not None
        devices.faults.connect(posted)
        (event,) = posted.wait_for(1)
        assert isinstance(event, FaultRaised) and event.fault == "emergency_stop"
    finally:
        devices.close()


def test_frames_drive_the_indicators(
    emulated: tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard], factory: MockFactory
) -> None:
    emulator, _, _ = emulated
    devices = build_devices(emulated_config(emulator.port), ManualClock(), pin_factory=factory)
    try:
        assert isinstance(devices.display, SignalledDisplay)
        devices.display.show(Frame(name="idle", title="Welcome", tone=Tone.INFO))
        assert factory.pin(LED_PIN).state == 1
    finally:
        devices.close()


def test_a_failed_build_closes_what_it_built(factory: MockFactory, tmp_path: Path) -> None:
    config = emulated_config(str(tmp_path / "no-such-port"))
    hw = dict(config.hardware.settings)
    hw["display"] = {"kind": "web", "host": "127.0.0.1", "port": 0}
    bad = replace(config, hardware=replace(config.hardware, settings=tuple(sorted(hw.items()))))
    # The web display cannot listen on a port in use: everything built before it is closed.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        hw["display"]["port"] = busy.getsockname()[1]
        with pytest.raises(OSError, match="kiosk web page"):
            build_devices(bad, ManualClock(), pin_factory=factory)
    assert factory.pin(RELAY).function == "input"
    assert not any(t.name == "EVSE board vehicle state" for t in threading.enumerate())


def test_the_web_page_says_starting_in_the_stations_language_before_the_first_frame(
    emulated: tuple[ModbusRtuEmulator, EmulatedSdmMeter, EmulatedEvseBoard], factory: MockFactory
) -> None:
    emulator, _, _ = emulated
    config = emulated_config(emulator.port)
    config = replace(config, station=replace(config.station, language="de"))
    devices = build_devices(config, ManualClock(), pin_factory=factory)
    try:
        assert isinstance(devices.display, SignalledDisplay)
        web = devices.display.display
        assert isinstance(web, WebDisplay)
        shown = requests.get(f"http://127.0.0.1:{web.port}/frame", timeout=5).json()
        assert (shown["name"], shown["language"]) == ("starting", "de")
        assert (shown["title"], shown["lines"]) == ("Wird gestartet", ["Bitte warten..."])
        others = {v["language"]: v["title"] for v in shown["variants"]}
        assert others == {"en": "Starting", "fr": "Démarrage", "nl": "Opstarten"}
    finally:
        devices.close()
