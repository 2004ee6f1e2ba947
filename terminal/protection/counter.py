"""Durable DUKPT transaction counters: a KSN is never used twice, across restarts and crashes.

ANSI X9.24-3-2017 requires every transaction to use a new counter. The protection module
therefore *reserves* a counter before it derives the key: it writes the counter to the store,
durably, and only then uses it. A crash after the write and before the use wastes one
counter (harmless: there are about 2^31 usable ones); a crash can never make a counter be
used twice.

`CounterStore` is the port; `FileCounterStore` keeps the counter in a small slot file
(`slots.py`: two copies rewritten in place, each with its checksum), so the file holds either
the old or the new value and a save needs no new disk space. The OCMF pagination counter
(`shell/signed_readings.py`) is kept the same way; the DUKPT counter file of devices
provisioned before the future-key registers is only read, once, to convert them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from terminal.errors import KeyMaterialError, KeyStateUnsaved
from terminal.protection.slots import SlotFile, SlotFileDamaged

COUNTER_FILE_NAME = "dukpt-counter"
_MAX_COUNTER_FILE_BYTES = 64


class CounterStore(Protocol):
    """Where the last reserved DUKPT transaction counter is kept.

    Contract: `load` returns the last counter passed to `save` (0 for a freshly provisioned
    device, none used yet); it raises KeyMaterialError when the state is missing or
    unreadable, rather than start again at 0. `save` returns only once the counter is
    durable; if it raises, the counter must not be used.
    """

    def load(self) -> int:
        """The last reserved counter (0 when none has been used)."""
        ...

    def save(self, counter: int) -> None:
        """Make `counter` the last reserved one, durably, before returning."""
        ...


def _parse(path: Path, text: str) -> int:
    value = text.strip()
    if len(value) != 8:
        raise KeyMaterialError(f"{path}: a counter file holds 8 hex digits")
    try:
        return int(value, 16)
    except ValueError:
        raise KeyMaterialError(f"{path}: a counter file holds 8 hex digits") from None


def write_counter_file(path: Path, counter: int, *, exclusive: bool = False) -> None:
    """Write the counter durably, mode 0600, as a slot file (`slots.py`): later saves rewrite
    it in place and need no new disk space.

    With `exclusive`, refuse to replace an existing file: re-provisioning a device over its
    counter would restart the counter and reuse numbers.
    """
    try:
        SlotFile(path).write(f"{counter:08X}\n".encode("ascii"), exclusive=exclusive)
    except FileExistsError:
        raise KeyMaterialError(f"{path}: already exists; refusing to reset a counter") from None


class FileCounterStore:
    """A `CounterStore` in one slot file (8 hex digits and a newline, twice), rewritten in
    place so a save never needs new disk space; the older format (the 9 bytes alone, replaced
    by rename) is read, and the next save makes the slot file.

    Not for use by two processes at once: one daemon owns a device's keys.
    """

    __slots__ = ("_file",)

    def __init__(self, path: Path) -> None:
        self._file = SlotFile(path)

    def __repr__(self) -> str:
        return f"FileCounterStore({str(self._file.path)!r})"

    @property
    def path(self) -> Path:
        """The counter file."""
        return self._file.path

    def in_place(self) -> bool:
        """True once the file is the slot file, whose saves need no new space."""
        return self._file.in_place()

    def load(self) -> int:
        """Read the last reserved counter; a missing or malformed file is KeyMaterialError."""
        path = self._file.path
        try:
            raw = self._file.read(_MAX_COUNTER_FILE_BYTES)
        except FileNotFoundError:
            raise KeyMaterialError(
                f"{path}: counter file missing; refusing to restart the counter at 0 "
                "(that would reuse numbers). Re-provision the device."
            ) from None
        except SlotFileDamaged:
            raise KeyMaterialError(f"{path}: counter file is damaged (checksum)") from None
        except ValueError:
            raise KeyMaterialError(f"{path}: a counter file holds 8 hex digits") from None
        except OSError as exc:
            raise KeyMaterialError(f"{path}: unreadable: {exc.strerror}") from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyMaterialError(f"{path}: a counter file holds 8 hex digits") from None
        return _parse(path, text)

    def save(self, counter: int) -> None:
        """Write the counter durably; KeyStateUnsaved if it could not be (then the file holds
        the old or the new value, and the new one must not be used)."""
        try:
            self._file.write(f"{counter:08X}\n".encode("ascii"))
        except OSError as exc:
            raise KeyStateUnsaved(
                f"{self._file.path}: cannot save counter: {exc.strerror}"
            ) from exc
