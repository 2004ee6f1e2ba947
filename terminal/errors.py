"""The one error hierarchy. Drivers raise these; the shell turns them into events; the core
never raises them (inside the core, `raise` means a bug)."""

from __future__ import annotations


class TerminalError(Exception):
    """Root of every error ev-terminal raises on purpose."""


class ConfigError(TerminalError):
    """The configuration is invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class DeviceError(TerminalError):
    """A device did not do what it was asked."""


class ReaderError(DeviceError):
    """The card reader failed or stopped answering."""


class CardRemoved(ReaderError):
    """The card left the field before the exchange finished."""


class CardError(TerminalError):
    """A card's answer is malformed or refuses the transaction."""


class TlvError(CardError):
    """A BER-TLV encoding is malformed."""


class ApduError(CardError):
    """An APDU is malformed or the card answered with an error status word."""


class MeterError(DeviceError):
    """The energy meter failed to answer correctly."""


class MeterTimeout(MeterError, TimeoutError):
    """The energy meter did not answer in time."""


class ContactorError(DeviceError):
    """The contactor's feedback contact disagrees with its command."""


class VehicleLinkError(DeviceError):
    """The vehicle link (control pilot) could not be read."""


class JournalError(TerminalError):
    """The local journal is unusable (integrity check failed, disk full)."""


class JournalFull(JournalError):
    """A journal write found the disk (or the journal's size cap) full (SQLITE_FULL)."""


class UplinkError(TerminalError):
    """The gateway gave no usable answer (timeout, connection error, 5xx, malformed body)."""


class GatewayRefused(TerminalError):
    """The gateway gave a definite refusal (a 4xx answer)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class KeyMaterialError(TerminalError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class KeyStateUnsaved(KeyMaterialError):
    """The device's key state (DUKPT registers, OCMF pagination) could not be written (a full
    disk, an I/O error): nothing it numbers was used, and it clears once a write succeeds."""


class FleetError(TerminalError):
    """A change to a fleet names no fleet, an existing device or an unknown one."""


class ProtectedDataError(TerminalError):
    """The encrypted card-data blob is malformed or fails authentication."""


class ScriptError(TerminalError):
    """A simulation script line is invalid; the message names the line."""

    def __init__(self, line_no: int, line: str, problem: str) -> None:
        super().__init__(f"line {line_no}: {problem}: {line!r}")
        self.line_no = line_no


class DirectoryInUse(TerminalError):
    """Another process holds the data or key directory (one daemon per directory)."""

    def __init__(self, path: str, holder: int | None) -> None:
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"{path} is in use by {who}; stop it first (one kiosk per directory)")
        self.path = path
        self.holder = holder
