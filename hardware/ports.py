"""The device ports: one small synchronous Protocol per device.

The application (`terminal/`) knows devices only through these. The simulator (`hardware/sim/`)
and the real drivers (`drivers/`) implement them and pass the same contract tests. Blocking
calls take a timeout and return `None` when nothing happened, so one device thread per port can
poll them and post events, and the scripted simulator can poll them with a timeout of zero.
Methods raise only `terminal.errors`-style exceptions defined here for the hardware layer
(`DeviceFault` and its leaves); the shell turns them into events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class DeviceFault(Exception):
    """A device failed; the shell turns this into a fault event."""


class ReaderFault(DeviceFault):
    """The card reader failed or stopped answering."""


class CardGone(ReaderFault):
    """The card left the field before the exchange finished (tearing)."""


class MeterFault(DeviceFault):
    """The energy meter did not answer, or answered with a bad frame."""


class ContactorFault(DeviceFault):
    """The contactor output could not be driven."""


class VehicleLinkFault(DeviceFault):
    """The control-pilot state could not be read."""


class PilotState(enum.Enum):
    """IEC 61851-1 control-pilot states (Annex A, table A.3)."""

    A = "A"  # no vehicle connected (+12 V)
    B = "B"  # vehicle connected, not ready for energy (+9 V)
    C = "C"  # vehicle connected, ready for energy, no ventilation needed (+6 V)
    D = "D"  # vehicle connected, ready for energy, ventilation required (+3 V)
    E = "E"  # EVSE disconnected / short to earth (0 V): a fault
    F = "F"  # EVSE not available / pilot error (-12 V): a fault

    @property
    def connected(self) -> bool:
        return self in (PilotState.B, PilotState.C, PilotState.D)

    @property
    def wants_energy(self) -> bool:
        return self in (PilotState.C, PilotState.D)

    @property
    def faulted(self) -> bool:
        return self in (PilotState.E, PilotState.F)


@runtime_checkable
class CardTarget(Protocol):
    """A card (or phone) in the reader's field.

    `iso_dep` targets speak ISO 14443-4 and carry APDUs (payment cards, wallets); others are
    identified by their UID only (MIFARE / NTAG fleet tokens). The UID of a bank card is random
    per tap on most cards (ISO 14443-3 random UID), so it identifies nothing.
    """

    @property
    def uid(self) -> bytes: ...

    @property
    def iso_dep(self) -> bool: ...

    def transceive(self, apdu: bytes) -> bytes:
        """Send a command APDU, return the response APDU (data + SW1 SW2).

        Raises `CardGone` if the card left the field, `ReaderFault` if the reader failed."""
        ...


class CardReader(Protocol):
    """A contactless reader.

    Contract: `poll` waits at most `timeout` seconds for a new card and returns it, or None.
    A card that stays in the field is returned once; it is returned again only after it left
    and came back (`present` in the simulator), also when the reader failed and came back while
    it stayed. A card put on the reader while it was failing is returned once it answers again.
    `close` makes a blocked `poll` return promptly.
    """

    def poll(self, timeout: float) -> CardTarget | None: ...

    def close(self) -> None: ...


class Contactor(Protocol):
    """The contactor enable relay with its auxiliary (mirror) feedback contact.

    Contract: `open` and `close` drive the output and return at once; `feedback_closed` reads
    the auxiliary contact, which follows the output within the contactor's operate time.
    The output is fail-open: it is open after power-up and after `release`.
    """

    def open(self) -> None: ...

    def close(self) -> None: ...

    def feedback_closed(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """One reading of the energy meter.

    `energy_wh` is the import active energy register, integer Wh, monotonic over the meter's
    life. `power_w` is the instantaneous active power. Voltage and current are per meter, in
    the units the meter reports, for display and diagnostics only.
    """

    energy_wh: int
    power_w: int
    voltage_dv: int = 0  # decivolts
    current_ma: int = 0  # milliamperes


class Meter(Protocol):
    """An energy meter. Contract: `read` returns a fresh reading or raises `MeterFault`;
    it never guesses or returns a stale register."""

    def read(self) -> MeterReading: ...

    @property
    def meter_id(self) -> str: ...


class VehicleLink(Protocol):
    """The vehicle's control-pilot state as the EVSE controller sees it.

    Contract: `wait_change(timeout)` returns the new state once it has changed (debounced by the
    device), or None if nothing changed within `timeout`; `state` reads the current state.
    """

    def state(self) -> PilotState: ...

    def wait_change(self, timeout: float) -> PilotState | None: ...

    def offer(self, current_a: int) -> None:
        """Offer energy: the pilot PWM on with the duty cycle for `current_a` amperes
        (IEC 61851-1 Annex A), so a connected vehicle may go from B to C. Called again while
        charging, it changes the current (lower or higher). VehicleLinkFault if the EVSE
        controller did not take it."""
        ...

    def withdraw(self) -> None:
        """No energy on offer: the pilot PWM off (steady, no duty cycle), so a vehicle in C
        stops drawing current and goes to B. Idempotent; VehicleLinkFault if not taken."""
        ...


class Tone(enum.Enum):
    """How a frame should feel: renderers choose colours, LEDs or beeps from it."""

    INFO = "info"
    BUSY = "busy"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """What the driver sees: a renderer-neutral screen.

    `name` is the screen's stable identifier (scripts `expect` it, the web page switches
    layout on it); `lines` are short human text lines; `fields` are labelled values (kWh,
    cost, time) that a richer renderer lays out; `qr` is a URL to encode as a QR code.
    `total` repeats the one field a renderer must always keep in view (a receipt's total);
    `code` is a labelled value to keep in view beside it that is not one of the `fields` (a
    receipt's one-time link code, also in `lines` for renderers that show only those).
    `language` is the frame's ISO 639-1 language; `variants` are the same screen in the other
    languages the station offers (a renderer with a language button switches between them);
    `labels` are named words for a renderer's own chrome in this language (step names, the
    language's name).
    """

    name: str
    title: str
    lines: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    qr: str | None = None
    tone: Tone = Tone.INFO
    total: tuple[str, str] | None = None
    code: tuple[str, str] | None = None
    language: str = "en"
    variants: tuple[Frame, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


class Display(Protocol):
    """Shows frames. Contract: `show` returns quickly and never raises for content."""

    def show(self, frame: Frame) -> None: ...


class Watchdog(Protocol):
    """A hardware watchdog: `arm` starts it (DeviceFault if it cannot), `kick` while the main
    loop is healthy; `stop` disarms it cleanly (magic close), so an orderly shutdown does not
    reset the board."""

    def arm(self) -> None: ...

    def kick(self) -> None: ...

    def stop(self) -> None: ...
