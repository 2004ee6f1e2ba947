"""Modbus RTU client plumbing shared by the meter and the EVSE-board drivers.

One `RtuBus` owns one serial port (an RS-485 adapter, or a pseudo-terminal in tests) and one
pymodbus synchronous client. Several drivers may share a bus (meter and EVSE board on the same
RS-485 pair, different unit ids); a lock serialises their transactions, since RTU is strictly
request/response and pymodbus's sync client is not meant for concurrent callers.

Every transaction is bounded: pymodbus waits at most `timeout_s` for an answer and retries
`retries` times, so one read takes at most `timeout_s * (retries + 1)` plus the frame times.
A CRC error is a dropped frame for pymodbus (it keeps listening until the timeout), so CRC
errors, silence and a missing port all end in `RtuError`; the drivers turn that into their
port's `DeviceFault` leaf.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pymodbus import FramerType, ModbusException
from pymodbus.client import ModbusSerialClient

PARITIES = ("N", "E", "O")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
MAX_READ_REGISTERS = 125  # Modbus application protocol v1.1b3, 6.3/6.4: 1..125 registers
MAX_WRITE_REGISTERS = 123  # 6.12: 1..123 registers per write


class RtuError(Exception):
    """A Modbus RTU transaction failed (no answer, bad frame, exception response, no port)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtuSettings:
    """The serial line. `port` is a device path (/dev/ttyUSB0, /dev/serial0, a pty path).

    `section` names the config section in error messages, e.g. "hardware.meter"."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 0.5
    retries: int = 2
    section: str = "hardware.modbus"

    def __post_init__(self) -> None:
        if not self.port or not self.port.startswith("/"):
            raise ValueError(
                f"{self.section}.port: must be an absolute device path, got {self.port!r}"
            )
        if self.baudrate not in BAUDRATES:
            raise ValueError(
                f"{self.section}.baudrate: must be one of {BAUDRATES}, got {self.baudrate!r}"
            )
        if self.parity not in PARITIES:
            raise ValueError(
                f"{self.section}.parity: must be one of {PARITIES}, got {self.parity!r}"
            )
        if self.stopbits not in (1, 2):
            raise ValueError(f"{self.section}.stopbits: must be 1 or 2, got {self.stopbits!r}")
        if not 0.01 <= self.timeout_s <= 5.0:
            raise ValueError(
                f"{self.section}.timeout_s: must be 0.01 to 5 s, got {self.timeout_s!r}"
            )
        if not 0 <= self.retries <= 5:
            raise ValueError(
                f"{self.section}.retries: must be between 0 and 5, got {self.retries!r}"
            )

    @property
    def char_time_s(self) -> float:
        """Time on the wire for one character: start bit, 8 data bits, parity, stop bits."""
        bits = 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    def read_time_s(self, registers: int) -> float:
        """Wire time of one read transaction of `registers` registers, with the 3.5-character
        silent interval that ends each frame (Modbus over serial line v1.02, 2.5.1.1)."""
        request_chars = 8  # id, function, address (2), count (2), CRC (2)
        response_chars = 5 + 2 * registers  # id, function, byte count, data, CRC (2)
        return (request_chars + response_chars + 2 * 3.5) * self.char_time_s


def validate_unit_id(unit_id: int, section: str) -> None:
    """Modbus serial line v1.02, 2.2: individual slave addresses are 1..247."""
    if not 1 <= unit_id <= 247:
        raise ValueError(f"{section}.unit_id: must be between 1 and 247, got {unit_id!r}")


class RtuBus:
    """One serial port, one client, one transaction at a time."""

    def __init__(self, settings: RtuSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._client = ModbusSerialClient(
            settings.port,
            framer=FramerType.RTU,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            bytesize=8,
            timeout=settings.timeout_s,
            retries=settings.retries,
        )

    def read_input_registers(self, unit_id: int, address: int, count: int) -> list[int]:
        """Function code 04."""
        return self._read(4, unit_id, address, count)

    def read_holding_registers(self, unit_id: int, address: int, count: int) -> list[int]:
        """Function code 03."""
        return self._read(3, unit_id, address, count)

    def _read(self, function: int, unit_id: int, address: int, count: int) -> list[int]:
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"register count {count} outside 1..{MAX_READ_REGISTERS}")
        with self._lock:
            if not self._client.connect():
                raise RtuError(f"cannot open serial port {self.settings.port}")
            try:
                if function == 4:
                    response = self._client.read_input_registers(
                        address, count=count, device_id=unit_id
                    )
                else:
                    response = self._client.read_holding_registers(
                        address, count=count, device_id=unit_id
                    )
            except ModbusException as exc:
                raise RtuError(
                    f"unit {unit_id} fc {function:02d} @0x{address:04X}: no valid answer ({exc})"
                ) from exc
            except OSError as exc:  # pyserial errors are OSError subclasses
                raise RtuError(f"serial port {self.settings.port}: {exc}") from exc
        if response.isError():
            raise RtuError(
                f"unit {unit_id} fc {function:02d} @0x{address:04X}: exception response {response}"
            )
        registers = list(response.registers)
        if len(registers) != count:
            raise RtuError(
                f"unit {unit_id} fc {function:02d} @0x{address:04X}: "
                f"{len(registers)} registers, asked for {count}"
            )
        return registers

    def write_registers(self, unit_id: int, address: int, values: list[int]) -> None:
        """Function code 16 (write multiple registers; Modbus application protocol v1.1b3,
        6.12), for 1..123 registers of 0..65535."""
        if not 1 <= len(values) <= MAX_WRITE_REGISTERS:
            raise ValueError(f"register count {len(values)} outside 1..{MAX_WRITE_REGISTERS}")
        if any(not 0 <= value <= 0xFFFF for value in values):
            raise ValueError(f"register values must be 0..65535, got {values}")
        with self._lock:
            if not self._client.connect():
                raise RtuError(f"cannot open serial port {self.settings.port}")
            try:
                response = self._client.write_registers(address, values, device_id=unit_id)
            except ModbusException as exc:
                raise RtuError(
                    f"unit {unit_id} fc 16 @0x{address:04X}: no valid answer ({exc})"
                ) from exc
            except OSError as exc:
                raise RtuError(f"serial port {self.settings.port}: {exc}") from exc
        if response.isError():
            raise RtuError(f"unit {unit_id} fc 16 @0x{address:04X}: exception response {response}")

    def close(self) -> None:
        with self._lock:
            self._client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves it untyped
