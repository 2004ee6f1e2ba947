"""A small state that is rewritten in place, so writing it never needs new disk space.

The device's DUKPT future-key registers and its OCMF pagination counter are written on every
card tap and every signed reading, and each must be durable before what it numbers is used. A
file replaced by rename needs a new file's blocks every time: on a full disk the tap or the
reading fails. Embedded firmware keeps such a record in a fixed area written in place, with
two copies so a write cut short leaves the other one whole; this module does that on a file.

The file is made once (temporary file, fsync, rename, directory fsync: the only write that
needs free space) with two slots of `SLOT_BYTES`, each holding a record::

    evslot1 <generation: 16 hex> <length: 8 hex> <sha256 of the two and the payload>\\n<payload>

padded with NUL bytes. A write takes the next generation, writes it into one slot
(`pwrite` over the file's own blocks, `fdatasync`), then copies it into the other slot
(`fdatasync`): once `write` returns, neither slot holds the state it replaced (a used DUKPT
key must not stay on disk), and a slot torn by a power cut is told by its checksum, the other
slot then being the state. Reading takes the valid slot of the highest generation.

Overwriting a file's blocks in place needs no allocation on ext4, the Raspberry Pi's file
system, nor on tmpfs; on a copy-on-write file system it may, and the callers treat a failed
write as a state that clears when a write succeeds again (`KeyStateUnsaved`).

A file of another size is the older format (the payload alone, written by rename): it is
read as such, and the next write makes the slot file in its place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path

SLOT_BYTES = 4096  # one page and one file-system block each: a slot is written in one I/O
_MAGIC = b"evslot1 "
_HEADER = len(_MAGIC) + 16 + 1 + 8 + 1 + 64 + 1


class SlotFileDamaged(ValueError):
    """Neither slot of a slot file holds a whole record."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _record(generation: int, payload: bytes, slot_bytes: int) -> bytes:
    numbers = b"%016X %08X " % (generation, len(payload))
    digest = hashlib.sha256(numbers + payload).hexdigest().encode("ascii")
    head = _MAGIC + numbers + digest + b"\n"
    record = head + payload
    if len(record) > slot_bytes:
        raise ValueError(f"a slot holds {slot_bytes - _HEADER} bytes, not {len(payload)}")
    return record + bytes(slot_bytes - len(record))


def _parse(slot: bytes) -> tuple[int, bytes] | None:
    """(generation, payload) of a whole record, None for a torn or empty slot."""
    if len(slot) < _HEADER or not slot.startswith(_MAGIC):
        return None
    try:
        gen_text, len_text, digest = slot[len(_MAGIC) : _HEADER - 1].split(b" ")
        generation, length = int(gen_text, 16), int(len_text, 16)
    except ValueError:
        return None
    if slot[_HEADER - 1 : _HEADER] != b"\n" or _HEADER + length > len(slot):
        return None
    payload = slot[_HEADER : _HEADER + length]
    numbers = slot[len(_MAGIC) : len(_MAGIC) + 26]
    if hashlib.sha256(numbers + payload).hexdigest().encode("ascii") != digest:
        return None
    return generation, payload


class SlotFile:
    """One state in a two-slot file at `path`; one process owns it (the key directory's lock)."""

    __slots__ = ("_generation", "path", "slot_bytes")

    def __init__(self, path: Path, slot_bytes: int = SLOT_BYTES) -> None:
        self.path = path
        self.slot_bytes = slot_bytes
        self._generation: int | None = None  # of the slots on disk, once read or written

    @property
    def tmp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp")

    def in_place(self) -> bool:
        """True if the file is a slot file: the next write needs no new space."""
        try:
            return self.path.stat().st_size == 2 * self.slot_bytes
        except FileNotFoundError:
            return False

    def read(self, limit: int) -> bytes:
        """The current payload (the older format: the file's bytes, at most `limit`).
        FileNotFoundError if there is no file, SlotFileDamaged if no slot is whole, ValueError
        if an older-format file is longer than `limit`."""
        with self.path.open("rb") as f:
            raw = f.read(max(limit, 2 * self.slot_bytes) + 1)
        if len(raw) != 2 * self.slot_bytes:
            if len(raw) > limit:
                raise ValueError(f"{self.path}: longer than {limit} bytes")
            self._generation = 0
            return raw
        found = [
            record
            for record in (_parse(raw[: self.slot_bytes]), _parse(raw[self.slot_bytes :]))
            if record is not None
        ]
        if not found:
            raise SlotFileDamaged(f"{self.path}: neither copy is whole")
        generation, payload = max(found)
        self._generation = generation
        return payload

    def write(self, payload: bytes, *, exclusive: bool = False) -> None:
        """Make `payload` the state, durably, before returning (OSError if it could not be
        written; the state on disk is then the old one or the new one, never neither)."""
        if exclusive and (self.path.exists() or self.tmp.exists()):
            raise FileExistsError(self.path)
        if not self.in_place():
            self._create(payload)
            return
        if self._generation is None:
            self.read(0)
        generation = (self._generation or 0) + 1
        record = _record(generation, payload, self.slot_bytes)
        first = (generation % 2) * self.slot_bytes
        fd = os.open(self.path, os.O_WRONLY)
        try:
            _pwrite_all(fd, record, first)
            os.fdatasync(fd)
            self._generation = generation
            _pwrite_all(fd, record, self.slot_bytes - first)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _create(self, payload: bytes) -> None:
        """Make the slot file (the one write that needs free space). The file it replaces
        is overwritten with zeros first, so a key it held does not stay in its blocks; if
        the rename is then cut short, the owner takes the new file (`tmp`) at its next read."""
        generation = (self._generation or 0) + 1
        record = _record(generation, payload, self.slot_bytes)
        tmp = self.tmp
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                _write_all(fd, record + record)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # From here the new file is whole: it is kept whatever fails after.
        wipe(self.path, unlink=False)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self._generation = generation


def _write_all(fd: int, data: bytes) -> None:
    """A short write (a disk with room for part of it) goes on until the next one raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    if os.pwrite(fd, data, offset) != len(data):
        raise OSError(errno.EIO, "short write over a slot")


def wipe(path: Path, *, unlink: bool = True) -> None:
    """Overwrite a file's bytes with zeros in place and fsync, then (by default) remove it:
    a key erased this way is not left in the file's blocks. A missing file is fine."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, bytes(size), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    if unlink:
        path.unlink()
        fsync_dir(path.parent)
