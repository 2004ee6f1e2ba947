"""Durable DUKPT transaction counters: a KSN is never used twice, across restarts and crashes.

ANSI X9.24-3-2017 requires every transaction to use a new counter. The protection module
therefore *reserves* a counter before it derives the key: it writes the counter to the store,
durably, and only then uses it. A crash after the write and before the use wastes one
counter (harmless: there are about 2^31 usable ones); a crash can never make a counter be
used twice.

`CounterStore` is the port; `FileCounterStore` keeps the counter in a small text file, written
to a temporary file, fsynced, renamed over the old one and the directory fsynced
(the POSIX atomic-replace idiom), so the file holds either the old or the new value.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from terminal.errors import KeyMaterialError

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
    """Write the counter atomically (temp file, fsync, rename, fsync dir), mode 0600.

    With `exclusive`, refuse to replace an existing file: re-provisioning a device over its
    counter would restart the counter and reuse KSNs.
    """
    if exclusive and path.exists():
        raise KeyMaterialError(f"{path}: already exists; refusing to reset a DUKPT counter")
    tmp = path.with_name(f".{path.name}.tmp")
    data = f"{counter:08X}\n".encode("ascii")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileCounterStore:
    """A `CounterStore` in one file (8 hex digits and a newline), replaced atomically.

    Not for use by two processes at once: one daemon owns a device's keys.
    """

    __slots__ = ("_path",)

    def __init__(self, path: Path) -> None:
        self._path = path

    def __repr__(self) -> str:
        return f"FileCounterStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The counter file."""
        return self._path

    def load(self) -> int:
        """Read the last reserved counter; a missing or malformed file is KeyMaterialError."""
        try:
            with self._path.open("rb") as f:
                raw = f.read(_MAX_COUNTER_FILE_BYTES + 1)
        except FileNotFoundError:
            raise KeyMaterialError(
                f"{self._path}: DUKPT counter file missing; refusing to restart the counter "
                "at 0 (that would reuse KSNs). Re-provision the device."
            ) from None
        except OSError as exc:
            raise KeyMaterialError(f"{self._path}: unreadable: {exc.strerror}") from None
        if len(raw) > _MAX_COUNTER_FILE_BYTES:
            raise KeyMaterialError(f"{self._path}: a counter file holds 8 hex digits")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyMaterialError(f"{self._path}: a counter file holds 8 hex digits") from None
        return _parse(self._path, text)

    def save(self, counter: int) -> None:
        """Write the counter durably; on failure the temporary file is removed."""
        try:
            write_counter_file(self._path, counter)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._path.with_name(f".{self._path.name}.tmp").unlink()
            raise KeyMaterialError(f"{self._path}: cannot save counter: {exc.strerror}") from exc
