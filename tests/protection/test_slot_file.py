"""The key state's slot file (`terminal/protection/slots.py`): written in place, so a full
disk does not stop it; two copies, so a write cut short leaves a whole one; the state it
replaces is gone from the file once a write returns. On a real full file system (tmpfs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.errors import KeyMaterialError, KeyStateUnsaved
from terminal.protection.counter import FileCounterStore, write_counter_file
from terminal.protection.slots import SLOT_BYTES, SlotFile, SlotFileDamaged
from tests.small_fs import fill, mounted


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with mounted(tmp_path / "fs", "256k") as fs:
        yield fs


def test_a_slot_file_is_rewritten_in_place_on_a_disk_with_no_room_at_all(tiny_fs: Path) -> None:
    file = SlotFile(tiny_fs / "state")
    file.write(b"first")
    inode = (tiny_fs / "state").stat().st_ino
    fill(tiny_fs)
    for n in range(300):
        file.write(b"state %d" % n)
    assert os.statvfs(tiny_fs).f_bavail == 0
    assert (tiny_fs / "state").stat().st_ino == inode
    assert (tiny_fs / "state").stat().st_size == 2 * SLOT_BYTES
    assert SlotFile(tiny_fs / "state").read(0) == b"state 299"


def test_the_state_a_write_replaced_is_in_neither_copy(tmp_path: Path) -> None:
    file = SlotFile(tmp_path / "state")
    file.write(b"OLD-KEY-0123456789ABCDEF")
    file.write(b"NEW-KEY-FEDCBA9876543210")
    raw = (tmp_path / "state").read_bytes()
    assert b"OLD-KEY" not in raw
    assert raw.count(b"NEW-KEY-FEDCBA9876543210") == 2


def test_a_torn_copy_leaves_the_other(tmp_path: Path) -> None:
    path = tmp_path / "state"
    file = SlotFile(path)
    file.write(b"one")
    file.write(b"two")
    whole = path.read_bytes()
    for torn in (0, SLOT_BYTES):
        # A power cut in the middle of a copy: its bytes half written, its checksum wrong.
        for spot in (torn + 8, torn + 100):  # its generation (it looks newer), its payload
            damaged = bytearray(whole)
            damaged[spot] ^= 1
            path.write_bytes(bytes(damaged))
            assert SlotFile(path).read(0) == b"two"
    path.write_bytes(bytes(2 * SLOT_BYTES))
    with pytest.raises(SlotFileDamaged):
        SlotFile(path).read(0)


def test_a_write_cut_between_the_copies_reads_as_the_new_state(tmp_path: Path) -> None:
    path = tmp_path / "state"
    SlotFile(path).write(b"old")
    before = path.read_bytes()
    SlotFile(path).write(b"new")
    after = path.read_bytes()
    # Generation 2 went to slot 0 first; the power went before slot 1 was copied.
    path.write_bytes(after[:SLOT_BYTES] + before[SLOT_BYTES:])
    assert SlotFile(path).read(0) == b"new"
    SlotFile(path).write(b"newer")
    assert SlotFile(path).read(0) == b"newer"


def test_a_counter_in_the_older_format_is_read_and_made_a_slot_file(tmp_path: Path) -> None:
    path = tmp_path / "ocmf-pagination"
    path.write_bytes(b"0000002A\n")  # as written by rename before slot files
    store = FileCounterStore(path)
    assert not store.in_place()
    assert store.load() == 42
    store.save(43)
    assert store.in_place()
    assert FileCounterStore(path).load() == 43
    with pytest.raises(KeyMaterialError, match="already exists"):
        write_counter_file(path, 0, exclusive=True)


def test_a_counter_that_cannot_be_made_on_a_full_disk_is_unsaved_and_keeps_its_value(
    tiny_fs: Path,
) -> None:
    path = tiny_fs / "ocmf-pagination"
    path.write_bytes(b"00000007\n")
    fill(tiny_fs)
    store = FileCounterStore(path)
    with pytest.raises(KeyStateUnsaved):
        store.save(8)
    assert store.load() == 7
    assert not (tiny_fs / ".ocmf-pagination.tmp").exists()
    (tiny_fs / "filler").unlink()
    store.save(8)
    assert store.in_place()
    assert FileCounterStore(path).load() == 8
