"""The Modbus meter driver against an emulated Eastron meter on a pty."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest

from drivers.modbus_meter import (
    ModbusMeter,
    ModbusMeterSettings,
    float32_kwh_to_wh,
    float32_step_wh,
)
from hardware.emulators.modbus_devices import EmulatedSdmMeter, ModbusRtuEmulator
from hardware.ports import MeterFault


@pytest.fixture
def device() -> EmulatedSdmMeter:
    return EmulatedSdmMeter(energy_wh=1_234_567, power_w=7_400.4, voltage_v=231.25, current_a=10.7)


@pytest.fixture
def emulator(device: EmulatedSdmMeter) -> Iterator[ModbusRtuEmulator]:
    with ModbusRtuEmulator(device) as emulator:
        yield emulator


def make_meter(port: str, *, model: str = "sdm630", retries: int = 1) -> ModbusMeter:
    return ModbusMeter(
        ModbusMeterSettings(port=port, model=model, baudrate=38400, timeout_s=0.1, retries=retries)
    )


@pytest.fixture
def meter(emulator: ModbusRtuEmulator) -> Iterator[ModbusMeter]:
    meter = make_meter(emulator.port)
    yield meter
    meter.close()


def test_sdm630_reading_has_energy_power_voltage_current(meter: ModbusMeter) -> None:
    reading = meter.read()
    assert reading.energy_wh == 1_234_567
    assert reading.power_w == 7_400
    assert reading.voltage_dv == 2_312  # 231.25 V: float32 exact, rounds half to even
    assert reading.current_ma == 10_700
    assert meter.meter_id == "sdm630-1"


def test_sdm72d_m_bills_from_total_kwh_and_has_no_voltage() -> None:
    device = EmulatedSdmMeter(model="sdm72d-m", unit_id=7, energy_wh=52_000, power_w=3_600)
    with ModbusRtuEmulator(device) as emulator:
        meter = ModbusMeter(
            ModbusMeterSettings(
                port=emulator.port, model="sdm72d-m", unit_id=7, baudrate=38400, timeout_s=0.1
            )
        )
        reading = meter.read()
        meter.close()
    assert (reading.energy_wh, reading.power_w, reading.voltage_dv, reading.current_ma) == (
        52_000,
        3_600,
        0,
        0,
    )


def test_energy_follows_the_register(meter: ModbusMeter, device: EmulatedSdmMeter) -> None:
    first = meter.read().energy_wh
    device.set_energy_wh(first + 11_000)
    assert meter.read().energy_wh == first + 11_000


@pytest.mark.parametrize(
    ("kwh", "wh"),
    [
        (2.0, 2_000),
        (1.9999, 1_999),  # float32 1.99989998... kWh: 1999.89 Wh, shown as 1999
        (0.7, 699),  # float32 0.69999998... kWh lies below 700 Wh: never rounded up
        (1234.567, 1_234_567),  # float32 1234.5670166... kWh
    ],
)
def test_float_kwh_is_rounded_down_to_whole_wh(
    meter: ModbusMeter, device: EmulatedSdmMeter, kwh: float, wh: int
) -> None:
    device.set_energy_kwh(kwh)
    assert meter.read().energy_wh == wh


def test_float32_step_grows_with_the_register() -> None:
    assert float32_step_wh(1_000.0) <= 1
    assert float32_step_wh(16_383.0) < 1
    assert float32_step_wh(20_000.0) == Fraction(1000, 512)
    assert float32_step_wh(100_000.0) == Fraction(1000, 128)
    assert float32_step_wh(0.0) == 0


def test_non_finite_or_negative_energy_is_a_fault() -> None:
    for bad in (math.nan, math.inf, -0.5):
        with pytest.raises(MeterFault):
            float32_kwh_to_wh(bad)


def test_nan_register_is_a_fault_not_a_guess(meter: ModbusMeter, device: EmulatedSdmMeter) -> None:
    device.set_energy_kwh(math.nan)
    with pytest.raises(MeterFault, match="nan"):
        meter.read()


def test_register_going_backwards_is_a_fault(meter: ModbusMeter, device: EmulatedSdmMeter) -> None:
    assert meter.read().energy_wh == 1_234_567
    device.set_energy_wh(1_234_000)
    with pytest.raises(MeterFault, match="backwards"):
        meter.read()
    device.set_energy_wh(1_234_625)  # 1234.625 kWh is exact in binary
    assert meter.read().energy_wh == 1_234_625


def test_one_corrupt_frame_is_retried(meter: ModbusMeter, device: EmulatedSdmMeter) -> None:
    device.corrupt_crc(1)
    assert meter.read().energy_wh == 1_234_567
    assert device.corrupt_next == 0


def test_corrupt_frames_beyond_the_retry_count_are_a_fault(
    meter: ModbusMeter, device: EmulatedSdmMeter
) -> None:
    device.corrupt_crc(2)  # retries=1: two attempts, both corrupted
    with pytest.raises(MeterFault, match="no valid answer"):
        meter.read()
    assert meter.read().energy_wh == 1_234_567


def test_silent_meter_is_a_fault_until_it_answers_again(
    meter: ModbusMeter, device: EmulatedSdmMeter
) -> None:
    device.go_silent()
    with pytest.raises(MeterFault):
        meter.read()
    device.resume()
    assert meter.read().energy_wh == 1_234_567


def test_missing_port_is_a_fault() -> None:
    meter = make_meter("/dev/ev-terminal-no-such-tty")
    with pytest.raises(MeterFault, match="cannot open"):
        meter.read()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"port": "ttyUSB0"}, "hardware.meter.port"),
        ({"unit_id": 0}, "hardware.meter.unit_id"),
        ({"unit_id": 248}, "hardware.meter.unit_id"),
        ({"baudrate": 12_345}, "hardware.meter.baudrate"),
        ({"model": "sdm120"}, "hardware.meter.model"),
        ({"parity": "X"}, "hardware.meter.parity"),
        ({"timeout_s": 30.0}, "hardware.meter.timeout_s"),
        ({"retries": -1}, "hardware.meter.retries"),
    ],
)
def test_bad_settings_name_the_key(change: dict[str, object], key: str) -> None:
    settings: dict[str, object] = {"port": "/dev/ttyUSB0", **change}
    with pytest.raises(ValueError, match=key):
        ModbusMeterSettings(**settings)  # type: ignore[arg-type]


def test_a_read_takes_the_wire_time_at_the_lines_baud_rate() -> None:
    """9600 baud, 11 bits a character: the 8-byte request and the 9-byte answer of a
    two-register read take 19.5 ms on the wire; each of the meter's four reads waits for it."""
    device = EmulatedSdmMeter(energy_wh=1_000)
    with ModbusRtuEmulator(device, baudrate=9600) as emulator:
        meter = ModbusMeter(
            ModbusMeterSettings(port=emulator.port, baudrate=9600, timeout_s=1.0, retries=0)
        )
        try:
            started = time.monotonic()
            assert meter.read().energy_wh == 1_000
            assert time.monotonic() - started >= 4 * 17 * 11 / 9600
        finally:
            meter.close()


def test_a_driver_set_to_another_speed_than_the_line_hears_nothing() -> None:
    device = EmulatedSdmMeter(energy_wh=1_000)
    with ModbusRtuEmulator(device, baudrate=9600) as emulator:
        meter = ModbusMeter(
            ModbusMeterSettings(port=emulator.port, baudrate=19200, timeout_s=0.1, retries=0)
        )
        try:
            with pytest.raises(MeterFault):
                meter.read()
            assert device.requests == 0  # the meter heard only noise
        finally:
            meter.close()
