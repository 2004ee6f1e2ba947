"""The vehicle's IEC 61851-1 control-pilot state. Implements `VehicleLink` two ways.

`EvseDinLink` reads it from an EVSE-DIN / EVSE-WB controller board (evracing, sold by openWB;
the board EVSE-WiFi builds on) over Modbus RTU. Register used (holding register, function
code 03; "EVSE Wallbox, DIN, W16 datasheet", Modbus register table; board defaults 9600 baud,
8N1, unit id 1, Modbus must be enabled in register 2001):

| register 1002 "vehicle state"          | PilotState                              |
|----------------------------------------|-----------------------------------------|
| 1 ready (no vehicle)                   | A                                       |
| 2 EV is present                        | B                                       |
| 3 charging                             | C                                       |
| 4 charging with ventilation            | D                                       |
| 5 failure (e.g. diode check)           | F (pilot error; the board does not tell |
|                                        | a short, E, from a missing diode)       |
| anything else                          | VehicleLinkFault                        |

Control (`offer`, `withdraw`), same datasheet, holding registers written with function 16:

| register 1000 "configured amps" | the current the pilot's duty cycle offers, 6..80 A        |
|---------------------------------|-----------------------------------------------------------|
| register 1004 bit 0             | "turn off charging now": 1 = pilot PWM off (steady state, |
|                                 | no energy on offer; a car in C goes to B), 0 = PWM on     |

`offer(current_a)` writes 1000 then clears 1004 bit 0; `withdraw()` sets 1004 bit 0. The board
turns the amperes into the duty cycle itself (IEC 61851-1 Annex A, the pilot duty-cycle table:
amperes / 0.6 from 10 % at 6 A to 85 % at 51 A, then amperes / 2.5 + 64 up to 96 % at 80 A).
The machine keeps the PWM off until a session is authorized, so a plug-first car waits in B
with no energy offered.

`GpioPilotLink` reads two or three digital inputs driven by a pilot front end (window
comparators and an encoder on the pilot's positive plateau), through gpiozero. The default
3-input code, first pin most significant, is in `DEFAULT_PILOT_CODES`; all-low (front end
unpowered) and all-high (stuck) are not codes and read as a fault. With two inputs the codes
must be given explicitly, and must not let E or F read as C or D.

Debounce: a poller thread samples the state every `poll_interval_s` and confirms a change
only after `confirm_reads` equal samples in a row; a confirmed change is queued once and
returned by `wait_change`. Worst-case confirmation time is (confirm_reads + 1) sample periods
(the change can land just after a sample started), and the settings refuse a configuration
whose worst case exceeds `CONFIRM_BUDGET_S` (50 ms). For Modbus the sample period includes
the transaction's wire time: at 9600 baud one read of one register is about 23 ms, so the
EVSE-DIN default is confirm_reads=1 (the board debounces the pilot itself); at 19200 baud
two reads fit.

A failed read (no answer, bad frame, a port that cannot be opened) and a confirmed value that
is not a state are queued once as a fault: `wait_change` raises `VehicleLinkFault`, and `state`
raises until a valid state is confirmed again (reported by `wait_change` if it differs from the
last one). After a failed read the poller backs off (`ERROR_BACKOFF`: 50 ms doubling to 1 s)
until a read succeeds again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.backoff import Backoff
from drivers.gpio import InputPin
from drivers.modbus_rtu import RtuBus, RtuError, RtuSettings, validate_unit_id
from hardware.ports import PilotState, VehicleLinkFault

CONFIRM_BUDGET_S = 0.050
JOIN_TIMEOUT_S = 2.0
# After a failed read: the first fault is reported at once, then retries slow down to one a
# second, so a missing board (a port that cannot be opened fails in microseconds) costs next
# to no CPU and a board that comes back is seen again within a second.
ERROR_BACKOFF = Backoff(initial_s=0.05, factor=2.0, maximum_s=1.0)

EVSE_DIN_VEHICLE_STATE = 1002
EVSE_DIN_CURRENT = 1000
EVSE_DIN_TURN_OFF = 1004
TURN_OFF_BIT = 0x0001
# IEC 61851-1 Annex A: the duty cycle encodes 6 A (10 %) up to 80 A (96 %).
MIN_CURRENT_A = 6
MAX_CURRENT_A = 80
EVSE_DIN_STATES: dict[int, PilotState] = {
    1: PilotState.A,
    2: PilotState.B,
    3: PilotState.C,
    4: PilotState.D,
    5: PilotState.F,
}

DEFAULT_PILOT_CODES: dict[int, PilotState] = {
    0b001: PilotState.A,
    0b010: PilotState.B,
    0b011: PilotState.C,
    0b100: PilotState.D,
    0b101: PilotState.E,
    0b110: PilotState.F,
}


class Debouncer:
    """Confirms a raw sample (register value, input code) after `confirm_reads` equal samples
    in a row. Pure: no clock, no threads."""

    def __init__(self, confirm_reads: int) -> None:
        self._needed = confirm_reads
        self._candidate: int | None = None
        self._count = 0
        self.confirmed: int | None = None

    def feed(self, sample: int) -> int | None:
        """Take one sample; return it if this sample confirms a change."""
        if sample == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = sample, 1
        if self._count >= self._needed and sample != self.confirmed:
            self.confirmed = sample
            return sample
        return None

    def reset(self) -> None:
        """Forget everything (after a failed read): the next run confirms afresh."""
        self._candidate, self._count, self.confirmed = None, 0, None


class _Fault:
    def __init__(self, error: VehicleLinkFault) -> None:
        self.error = error


class PolledPilotLink:
    """The poller thread, debounce, queue and port contract shared by both links.

    `sample` returns a raw value (raises VehicleLinkFault when it cannot read one); `decode`
    maps a confirmed raw value to a state, or None for a value that is not a state. An
    undocumented value is debounced like any other, so a transient code between two states
    (inputs do not change together) is never reported. The first confirmed state is the
    initial state, not a change: the constructor waits for it (or for the first fault), at
    most `startup_timeout_s`, so a change right after construction is reported as one."""

    def __init__(
        self,
        sample: Callable[[], int],
        decode: Callable[[int], PilotState | None],
        *,
        poll_interval_s: float,
        confirm_reads: int,
        name: str,
        startup_timeout_s: float = 1.0,
        backoff: Backoff = ERROR_BACKOFF,
    ) -> None:
        self._sample = sample
        self._backoff = backoff
        self._decode = decode
        self._interval = poll_interval_s
        self._debouncer = Debouncer(confirm_reads)
        self._changes: queue.Queue[PilotState | _Fault] = queue.Queue()
        self._lock = threading.Lock()
        self._state: PilotState | None = None
        self._fault: VehicleLinkFault | None = None
        self._settled = threading.Event()  # first state confirmed, or first fault
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._settled.wait(startup_timeout_s)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            failures = 0 if self._poll_once() else failures + 1
            self._stop.wait(max(self._interval, self._backoff.delay(failures)))

    def _poll_once(self) -> bool:
        """One sample; False if it could not be read (the poller then backs off)."""
        try:
            raw = self._sample()
        except VehicleLinkFault as exc:
            self._debouncer.reset()
            self._set_fault(exc)
            return False
        self._confirm(raw)
        return True

    def _confirm(self, raw: int) -> None:
        confirmed = self._debouncer.feed(raw)
        if confirmed is None:
            return
        state = self._decode(confirmed)
        if state is None:
            self._set_fault(VehicleLinkFault(f"{self._thread.name}: {confirmed} is not a state"))
            return
        with self._lock:
            self._fault = None
            previous, self._state = self._state, state
        if previous is not None and previous != state:
            self._changes.put(state)
        self._settled.set()

    def _set_fault(self, error: VehicleLinkFault) -> None:
        with self._lock:
            first_failure = self._fault is None
            self._fault = error
        if first_failure:
            self._changes.put(_Fault(error))
        self._settled.set()

    def state(self) -> PilotState:
        with self._lock:
            if self._fault is not None:
                raise VehicleLinkFault(str(self._fault))
            if self._state is None:
                raise VehicleLinkFault("no confirmed pilot state yet")
            return self._state

    def wait_change(self, timeout: float) -> PilotState | None:
        try:
            item = self._changes.get(timeout=timeout) if timeout > 0 else self._changes.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _Fault):
            raise VehicleLinkFault(str(item.error))
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT_S)


def _check_budget(period_s: float, confirm_reads: int, section: str) -> None:
    if not 1 <= confirm_reads <= 10:
        raise ValueError(f"{section}.confirm_reads: must be 1..10, got {confirm_reads!r}")
    worst_s = (confirm_reads + 1) * period_s
    if worst_s > CONFIRM_BUDGET_S:
        raise ValueError(
            f"{section}.confirm_reads: {confirm_reads} reads of {period_s * 1000:.1f} ms each "
            f"confirm a change in up to {worst_s * 1000:.0f} ms, over the "
            f"{CONFIRM_BUDGET_S * 1000:.0f} ms budget"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseDinSettings:
    """[hardware.vehicle] with kind = "evse-din"."""

    port: str
    unit_id: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 0.1
    retries: int = 1
    poll_interval_s: float = 0.0
    confirm_reads: int = 1

    def __post_init__(self) -> None:
        validate_unit_id(self.unit_id, "hardware.vehicle")
        rtu = self.rtu()
        if not 0 <= self.poll_interval_s <= 0.05:
            raise ValueError(
                f"hardware.vehicle.poll_interval_s: must be 0..0.05, got {self.poll_interval_s!r}"
            )
        period = rtu.read_time_s(1) + self.poll_interval_s
        _check_budget(period, self.confirm_reads, "hardware.vehicle")

    def rtu(self) -> RtuSettings:
        return RtuSettings(
            port=self.port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout_s=self.timeout_s,
            retries=self.retries,
            section="hardware.vehicle",
        )


class EvseDinLink(PolledPilotLink):
    """Implements `hardware.ports.VehicleLink` on an EVSE-DIN board over Modbus RTU.

    Pass `bus` to share the RS-485 line with the meter (distinct unit ids)."""

    def __init__(self, settings: EvseDinSettings, *, bus: RtuBus | None = None) -> None:
        self.settings = settings
        self._bus = bus if bus is not None else RtuBus(settings.rtu())
        self._owns_bus = bus is None
        super().__init__(
            self._read_register,
            EVSE_DIN_STATES.get,
            poll_interval_s=settings.poll_interval_s,
            confirm_reads=settings.confirm_reads,
            name="EVSE board vehicle state",
        )

    def _read_register(self) -> int:
        try:
            (value,) = self._bus.read_holding_registers(
                self.settings.unit_id, EVSE_DIN_VEHICLE_STATE, 1
            )
        except RtuError as exc:
            raise VehicleLinkFault(f"EVSE board: {exc}") from exc
        return value

    def offer(self, current_a: int) -> None:
        if not MIN_CURRENT_A <= current_a <= MAX_CURRENT_A:
            raise ValueError(f"current {current_a} A outside {MIN_CURRENT_A}..{MAX_CURRENT_A} A")
        self._write(EVSE_DIN_CURRENT, current_a)
        self._write(EVSE_DIN_TURN_OFF, 0)

    def withdraw(self) -> None:
        self._write(EVSE_DIN_TURN_OFF, TURN_OFF_BIT)

    def _write(self, register: int, value: int) -> None:
        try:
            self._bus.write_registers(self.settings.unit_id, register, [value])
        except RtuError as exc:
            raise VehicleLinkFault(f"EVSE board: {exc}") from exc

    def close(self) -> None:
        super().close()
        if self._owns_bus:
            self._bus.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class GpioPilotSettings:
    """[hardware.vehicle] with kind = "gpio". `pins` first pin = most significant bit."""

    pins: tuple[InputPin, ...]
    codes: Mapping[int, PilotState] | None = None
    poll_interval_s: float = 0.005
    confirm_reads: int = 3

    def __post_init__(self) -> None:
        if len(self.pins) not in (2, 3):
            raise ValueError(f"hardware.vehicle.pins: two or three inputs, got {len(self.pins)}")
        for index, pin in enumerate(self.pins):
            pin.validate(f"hardware.vehicle.pins[{index}]")
        if len({pin.pin for pin in self.pins}) != len(self.pins):
            raise ValueError("hardware.vehicle.pins: the same pin appears twice")
        if self.codes is None and len(self.pins) != 3:
            raise ValueError("hardware.vehicle.codes: required with two inputs")
        for code in self.pilot_codes():
            if not 0 <= code < 2 ** len(self.pins):
                raise ValueError(f"hardware.vehicle.codes: {code} needs more than the inputs")
        if not 0.001 <= self.poll_interval_s <= 0.05:
            raise ValueError(
                f"hardware.vehicle.poll_interval_s: must be 1..50 ms, got {self.poll_interval_s!r}"
            )
        _check_budget(self.poll_interval_s, self.confirm_reads, "hardware.vehicle")

    def pilot_codes(self) -> Mapping[int, PilotState]:
        return DEFAULT_PILOT_CODES if self.codes is None else self.codes


class GpioPilotLink(PolledPilotLink):
    """Implements `hardware.ports.VehicleLink` on digital inputs from a pilot front end."""

    def __init__(self, settings: GpioPilotSettings, factory: Any) -> None:
        self.settings = settings
        self._codes = settings.pilot_codes()
        self._inputs = [pin.device(factory) for pin in settings.pins]
        super().__init__(
            self._read_code,
            self._codes.get,
            poll_interval_s=settings.poll_interval_s,
            confirm_reads=settings.confirm_reads,
            name="pilot input code",
        )

    # A read-only input: boards with this front end generate the pilot (and its PWM)
    # themselves, so there is nothing to offer or withdraw here; the relay is what the kiosk
    # controls. Generating the 1 kHz PWM from the Pi is not built.
    def offer(self, current_a: int) -> None:
        return None

    def withdraw(self) -> None:
        return None

    def _read_code(self) -> int:
        code = 0
        for device in self._inputs:
            code = (code << 1) | int(bool(device.is_active))
        return code

    def close(self) -> None:
        super().close()
        for device in self._inputs:
            device.close()
