"""The journal's reserve: disk space held back in a file, given back when the disk is full.

A full disk must not stop the kiosk from settling the session it is running: the record that
ends it, its capture or void and the fault event all need a few pages, and in WAL mode even
deleting rows needs new space. So the data directory holds a preallocated file of
`RESERVE_BYTES`; when a journal write finds the disk full (SQLITE_FULL), the file is removed,
its blocks go back to the file system, and the write is tried again: the daemon then takes
the kiosk out of service (`journal_full`) and settles from that room. The file is made again,
and the fault cleared, once the file system has room for it and a margin besides.

The WAL is kept small (`Journal`: `journal_size_limit`, `wal_autocheckpoint`) so the reserve
covers its growth while the kiosk settles.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("ev_terminal.reserve")

RESERVE_FILE = "journal.reserve"
# 2 MiB: a settled session writes a few pages (records, a capture, events, signed readings),
# and the WAL, checkpointed every WAL_AUTOCHECKPOINT pages and truncated to
# WAL_SIZE_LIMIT bytes, stays well below it.
RESERVE_BYTES = 2 << 20
# The reserve is made again only when this much is free besides it, so making it does not
# fill the disk at once again.
MARGIN_BYTES = 1 << 20


class Reserve:
    """A preallocated file in the journal's directory; `release` frees it, `ensure` makes it."""

    __slots__ = ("margin", "path", "size")

    def __init__(
        self, directory: Path, size: int = RESERVE_BYTES, margin: int = MARGIN_BYTES
    ) -> None:
        self.path = directory / RESERVE_FILE
        self.size = size
        self.margin = margin

    def present(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def free_bytes(self) -> int:
        """What the file system has free for this process (`statvfs` f_bavail)."""
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has room for it and the margin;
        True if it is there now. Blocks are allocated for real (`posix_fallocate`), so the
        space is the journal's whatever else fills the disk."""
        if self.present():
            return True
        if self.free_bytes() < self.size + self.margin:
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("event=reserve_not_made error=%s", exc.strerror)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        log.info("event=reserve_made bytes=%d", self.size)
        return True

    def release(self) -> bool:
        """Give the reserve's blocks back to the file system; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("event=reserve_released bytes=%d", self.size)
        return True
