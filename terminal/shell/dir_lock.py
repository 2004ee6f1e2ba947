"""One process per directory: an exclusive `flock(2)` on a lock file inside it.

Two daemons on one data directory would both read the journal and the DUKPT registers once
and then reuse transaction counters (the gateway refuses the second blob under a KSN as a
replay) and interleave their journal writes. `run`, `demo` and `simulate` therefore hold an
exclusive lock on the data directory and on the key directory for as long as they run.

The lock is the kernel's (`flock`, per open file description): it goes away with the process,
however it ends (SIGKILL, power loss), so a stale lock file never keeps a kiosk down. The file
holds the holder's pid, for the message the second process prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from terminal.errors import DirectoryInUse

LOCK_FILE = ".lock"


class DirectoryLock:
    """An exclusive lock on a directory, taken at construction; `release` (or `with`) ends it."""

    __slots__ = ("_fd", "path")

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DirectoryInUse(str(directory), holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (idempotent). The file stays: removing it would race a new holder."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def lock_directories(*directories: Path | None) -> list[DirectoryLock]:
    """Lock each distinct directory given, in order; on a refusal, release what was taken."""
    locks: list[DirectoryLock] = []
    seen: set[Path] = set()
    try:
        for directory in directories:
            if directory is None or directory.resolve() in seen:
                continue
            seen.add(directory.resolve())
            locks.append(DirectoryLock(directory))
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks
