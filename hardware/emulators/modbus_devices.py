"""Emulated Modbus RTU devices on a pseudo-terminal: an Eastron energy meter and an EVSE board.

The devices are served by pymodbus's own RTU server (`ModbusSerialServer`), so the real drivers
in `drivers/` run unchanged against them in CI, CRCs, framing and timeouts included.

Wiring: pymodbus opens a serial *path* at both ends, and a pty's master end has none, so
`RtuLine` makes two pty pairs and relays bytes between their master ends in a thread; the
server opens one slave path (`server_port`) and the driver opens the other (`port`). Both
slaves are kept open here and set raw, so nothing is echoed or lost while either side starts.

The line has the wire's time: the relay hands each chunk over only when the line, at its baud
rate, would have carried its last character (11 bits a character in RTU: start, 8 data,
parity or a second stop bit, stop; Modbus over serial line v1.02, 2.5.1), one direction at a
time as on a two-wire RS-485 pair. A driver whose port is set to another speed than the line
(read from the pty, termios) is heard as noise by the devices and hears noise from them:
those bytes are dropped.

The server runs in its own thread with its own asyncio loop; `stop()` shuts it down and joins
every thread with a bounded timeout. Register contents are refreshed from the emulated device's
state on every access (pymodbus `SimDevice.action`), so a test sets a value and the next read
sees it.

Hooks, per device (a response frame carries the unit id in its first byte):
- `go_silent()` / `resume()`: the device receives requests but never answers (a cut A/B pair,
  a powered-off meter);
- `corrupt_crc(n)`: the next `n` answers go out with a wrong CRC (noise on the line).

The register maps are written here from the manufacturers' documents, independently of the
drivers, so a mistake in one shows up against the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import struct
import termios
import threading
import time
import tty
from dataclasses import dataclass
from types import TracebackType

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hardware.ports import PilotState

JOIN_TIMEOUT_S = 2.0
RTU_BITS_PER_CHAR = 11
MIN_WAIT_S = 0.005
TERMIOS_SPEEDS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)
    if hasattr(termios, f"B{rate}")
}

# -- Eastron meters (input registers, function code 04, IEEE-754 float32, high word first) ------
# SDM630-Modbus V2 manual, "Input registers": 30001 phase 1 L-N volts (0x0000), 30007 phase 1
# current (0x0006), 30053 total system power W (0x0034), 30073 total import kWh (0x0048).
# SDM72D-M (v1) manual: 30053 total system power (0x0034), 30343 total kWh (0x0156); this meter
# has no per-phase voltage or current registers.
SDM_MAPS: dict[str, dict[str, int]] = {
    "sdm630": {"voltage_v": 0x0000, "current_a": 0x0006, "power_w": 0x0034, "energy_kwh": 0x0048},
    "sdm72d-m": {"power_w": 0x0034, "energy_kwh": 0x0156},
}
SDM_REGISTER_SPAN = 0x0160  # covers every register above

# -- EVSE-DIN / EVSE-WB (evracing, sold by openWB) ------------------------------------------
# Holding registers, function code 03 ("EVSE Wallbox, DIN, W16 datasheet", Modbus register
# table): 1000 configured current A, 1001 actual current A, 1002 vehicle state (1 ready /
# no vehicle, 2 EV present, 3 charging, 4 charging with ventilation, 5 failure e.g. diode
# check), 1003 PP limit A, 1004 turn-off bit, 1005 firmware version, 1006 EVSE state
# (1 steady 12 V, 2 PWM on, 3 off), 1007 RCD status.
EVSE_FIRST_REGISTER = 1000
EVSE_REGISTER_COUNT = 8
EVSE_VEHICLE_STATE = 1002
EVSE_CURRENT = 1000
EVSE_TURN_OFF = 1004  # bit 0: "turn off charging now" (pilot PWM off)
EVSE_TURN_OFF_BIT = 0x0001
EVSE_STATE = 1006
EVSE_STATE_CODES: dict[PilotState, int] = {
    PilotState.A: 1,
    PilotState.B: 2,
    PilotState.C: 3,
    PilotState.D: 4,
    PilotState.E: 5,
    PilotState.F: 5,
}


def float32_registers(value: float) -> list[int]:
    """Two registers, high word first, as Eastron meters send a float32."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


class EmulatedDevice:
    """Fault hooks common to every emulated device on a line."""

    def __init__(self, unit_id: int) -> None:
        if not 1 <= unit_id <= 247:
            raise ValueError("unit_id must be 1..247")
        self.unit_id = unit_id
        self.lock = threading.Lock()
        self.silent = False
        self.corrupt_next = 0
        self.requests = 0  # answers attempted, including dropped or corrupted ones

    def go_silent(self) -> None:
        with self.lock:
            self.silent = True

    def resume(self) -> None:
        with self.lock:
            self.silent = False

    def corrupt_crc(self, frames: int) -> None:
        """Send the next `frames` answers with a wrong CRC."""
        with self.lock:
            self.corrupt_next = frames

    def outgoing(self, frame: bytes) -> bytes:
        """Apply the hooks to one answer; b"" means nothing is sent."""
        with self.lock:
            self.requests += 1
            if self.silent:
                return b""
            if self.corrupt_next > 0:
                self.corrupt_next -= 1
                return frame[:-1] + bytes([frame[-1] ^ 0xFF])
            return frame

    def sim_device(self) -> SimDevice:
        raise NotImplementedError


class EmulatedSdmMeter(EmulatedDevice):
    """An Eastron SDM630 (v2) or SDM72D-M on the line; energy, power, voltage, current settable.

    The energy register holds float32 kWh like the real meter; `set_energy_wh` stores the
    nearest float32 to the given Wh, `set_energy_kwh` stores any float (to test rounding)."""

    def __init__(
        self,
        *,
        model: str = "sdm630",
        unit_id: int = 1,
        energy_wh: int = 0,
        power_w: float = 0.0,
        voltage_v: float = 230.0,
        current_a: float = 0.0,
    ) -> None:
        super().__init__(unit_id)
        if model not in SDM_MAPS:
            raise ValueError(f"model must be one of {sorted(SDM_MAPS)}")
        self.model = model
        self.energy_kwh = energy_wh / 1000
        self.power_w = power_w
        self.voltage_v = voltage_v
        self.current_a = current_a

    def set_energy_wh(self, wh: int) -> None:
        with self.lock:
            self.energy_kwh = wh / 1000

    def set_energy_kwh(self, kwh: float) -> None:
        with self.lock:
            self.energy_kwh = kwh

    def set_power_w(self, watts: float) -> None:
        with self.lock:
            self.power_w = watts

    def _values(self) -> dict[str, float]:
        with self.lock:
            return {
                "voltage_v": self.voltage_v,
                "current_a": self.current_a,
                "power_w": self.power_w,
                "energy_kwh": self.energy_kwh,
            }

    async def _refresh(  # noqa: PLR0917 - pymodbus SimAction calls it positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        if function_code != 4:
            return
        values = self._values()
        for name, register in SDM_MAPS[self.model].items():
            offset = register - start_address
            registers[offset : offset + 2] = float32_registers(values[name])

    def sim_device(self) -> SimDevice:
        # Only the mapped registers are valid; reading anything else is an exception
        # response (illegal data address), as on the real meter.
        inputs = [
            SimData(register, values=0.0, datatype=DataType.FLOAT32)
            for register in SDM_MAPS[self.model].values()
        ]
        return SimDevice(
            self.unit_id,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=0, datatype=DataType.REGISTERS)],
                inputs,
            ),
            action=self._refresh,
        )


class EmulatedEvseBoard(EmulatedDevice):
    """An EVSE-DIN board on the line, with the car behind its control pilot.

    `set_state` is what the car does: plug in (B), ask for energy (C/D), unplug (A), a pilot
    fault (E/F). The board reads what the pilot shows, which follows the board's own output:
    with the PWM off (register 1004 bit 0 set) no energy is on offer, so a car that asks for
    energy waits in B (IEC 61851-1 Annex A: state C needs the PWM) and a car in C goes back to
    B; when the PWM comes back on it asks again. `ignores_pwm_off` makes a car that stays in C
    (one that does not answer the PWM going off). Writes to 1000 (amperes, 6..80) and 1004 are
    kept and recorded in `writes` (register, value); anything else written is refused with an
    illegal-address exception, as the board's other registers are read-only."""

    def __init__(
        self, *, unit_id: int = 1, state: PilotState = PilotState.A, ignores_pwm_off: bool = False
    ) -> None:
        super().__init__(unit_id)
        self.car = state
        self.raw: int | None = None  # set_raw_state's value, shown until the next set_state
        self.current_a = 16
        self.turn_off = 0  # register 1004; the board starts with the PWM allowed
        self.ignores_pwm_off = ignores_pwm_off
        self.writes: list[tuple[int, int]] = []
        self._stamped: list[tuple[int, int, float]] = []

    def take_stamped_writes(self) -> list[tuple[int, int, float]]:
        """The writes taken since the last call, as (register, value, time.monotonic()) -
        CLOCK_MONOTONIC, one clock for every process on the machine."""
        with self.lock:
            taken, self._stamped = self._stamped, []
            return taken

    def set_state(self, state: PilotState) -> None:
        with self.lock:
            self.car, self.raw = state, None

    def set_raw_state(self, value: int) -> None:
        """Put any value in register 1002 (to test undocumented values)."""
        with self.lock:
            self.raw = value

    @property
    def pwm_on(self) -> bool:
        with self.lock:
            return not self.turn_off & EVSE_TURN_OFF_BIT

    def pilot(self) -> PilotState:
        """What the pilot shows now: the car's state as the PWM lets it be."""
        with self.lock:
            return self._pilot()

    def _pilot(self) -> PilotState:
        if self.car.wants_energy and self.turn_off & EVSE_TURN_OFF_BIT and not self.ignores_pwm_off:
            return PilotState.B
        return self.car

    async def _refresh(  # noqa: PLR0917 - pymodbus SimAction calls it positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code in (6, 16) and set_values is not None:
            return self._write(address, [int(value) for value in set_values])
        if function_code != 3:
            return None
        with self.lock:
            pilot = self._pilot()
            registers[EVSE_VEHICLE_STATE - start_address] = (
                self.raw if self.raw is not None else EVSE_STATE_CODES[pilot]
            )
            registers[EVSE_CURRENT - start_address] = self.current_a
            registers[EVSE_TURN_OFF - start_address] = self.turn_off
            # 1006 "EVSE state": 1 steady 12 V, 2 PWM on, 3 off.
            evse_state = 1 if pilot is PilotState.A else 2
            registers[EVSE_STATE - start_address] = 3 if self.turn_off & 1 else evse_state
        return None

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        with self.lock:
            for offset, value in enumerate(values):
                register = address + offset
                if register == EVSE_CURRENT and (value == 0 or 6 <= value <= 80):
                    self.current_a = value
                elif register == EVSE_TURN_OFF:
                    self.turn_off = value
                elif register == EVSE_CURRENT:
                    return ExcCodes.ILLEGAL_VALUE
                else:
                    return ExcCodes.ILLEGAL_ADDRESS
                self.writes.append((register, value))
                self._stamped.append((register, value, time.monotonic()))
        return None

    def sim_device(self) -> SimDevice:
        holding = [
            16,  # 1000 configured current, A
            0,  # 1001 actual current, A
            1,  # 1002 vehicle state (refreshed on access)
            32,  # 1003 PP limit, A
            0,  # 1004 turn-off bit
            17,  # 1005 firmware version
            1,  # 1006 EVSE state: steady 12 V
            0,  # 1007 RCD status
        ]
        return SimDevice(
            self.unit_id,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(EVSE_FIRST_REGISTER, values=holding, datatype=DataType.REGISTERS)],
                [SimData(0, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._refresh,
        )


class RtuLine:
    """Two pty pairs joined by a relay thread: a null-modem cable with a path at each end,
    carrying bytes at `baudrate` (None: as fast as the relay goes)."""

    def __init__(self, baudrate: int | None = None) -> None:
        self.baudrate = baudrate
        self._line_free_at = 0.0
        self._server_master, self._server_slave = os.openpty()
        self._client_master, self._client_slave = os.openpty()
        for fd in (self._server_slave, self._client_slave):
            tty.setraw(fd)
        self.server_port = os.ttyname(self._server_slave)
        self.port = os.ttyname(self._client_slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._relay, name="rtu-line-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _relay(self) -> None:
        peer = {self._server_master: self._client_master, self._client_master: self._server_master}
        while not self._stopping:
            readable, _, _ = select.select([*peer, self._wake_r], [], [], 1.0)
            for fd in readable:
                if fd == self._wake_r:
                    return
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the other side closed; keep relaying the rest
                    continue
                if data and self._speed_matches():
                    self._carry(len(data))
                    os.write(peer[fd], data)

    def _carry(self, size: int) -> None:
        """Wait until the line has carried `size` characters after what it carries now."""
        if self.baudrate is None:
            return
        start = max(time.monotonic(), self._line_free_at)
        self._line_free_at = start + size * RTU_BITS_PER_CHAR / self.baudrate
        delay = self._line_free_at - time.monotonic()
        # A wait shorter than a loaded machine keeps (a few ms) goes at once: a short frame
        # arrives a little early rather than much too late; the time still adds up on the line.
        if delay > MIN_WAIT_S:
            time.sleep(delay)

    def _speed_matches(self) -> bool:
        """The driver's end is set to the line's speed (any speed when the line has none)."""
        if self.baudrate is None:
            return True
        try:
            speed = termios.tcgetattr(self._client_slave)[4]
        except termios.error:
            return True
        return TERMIOS_SPEEDS.get(speed, self.baudrate) == self.baudrate

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(JOIN_TIMEOUT_S)
        for fd in (
            self._server_master,
            self._server_slave,
            self._client_master,
            self._client_slave,
            self._wake_r,
            self._wake_w,
        ):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True, slots=True)
class _Running:
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event


class ModbusRtuEmulator:
    """pymodbus RTU server for one or more emulated devices, on a pty.

    `port` is the path the driver opens. Use as a context manager, or `start()` / `stop()`.
    `baudrate` is the line's speed: the wire time of every frame, and the speed the driver must
    set (see `RtuLine`)."""

    def __init__(self, *devices: EmulatedDevice, baudrate: int = 38400) -> None:
        if not devices:
            raise ValueError("at least one device")
        ids = [device.unit_id for device in devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unit ids must be distinct, got {ids}")
        self.devices = {device.unit_id: device for device in devices}
        self.baudrate = baudrate
        self._line = RtuLine(baudrate)
        self.port = self._line.port
        self._ready = threading.Event()
        self._running: _Running | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="rtu-emulator", daemon=True)

    def _trace_packet(self, sending: bool, frame: bytes) -> bytes:
        if not sending or not frame:
            return frame
        device = self.devices.get(frame[0])
        return device.outgoing(frame) if device else frame

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported to start(), which raises it in the caller
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        server = ModbusSerialServer(
            [device.sim_device() for device in self.devices.values()],
            framer=FramerType.RTU,
            port=self._line.server_port,
            baudrate=self.baudrate,
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        stop = asyncio.Event()
        self._running = _Running(asyncio.get_running_loop(), stop)
        self._ready.set()
        await stop.wait()
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it untyped

    def start(self) -> ModbusRtuEmulator:
        self._line.start()
        self._thread.start()
        if not self._ready.wait(JOIN_TIMEOUT_S) or self._error is not None:
            self._line.stop()
            raise RuntimeError(f"emulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        running = self._running
        if running is not None:
            running.loop.call_soon_threadsafe(running.stop.set)
        self._thread.join(JOIN_TIMEOUT_S)
        self._line.stop()

    def __enter__(self) -> ModbusRtuEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
