"""The originating device's DUKPT state: future-key registers (ANSI X9.24-3-2017).

Forward secrecy: the device never keeps its Initial Key (IK) after loading it, only the
standard's *intermediate derivation keys*, one register per counter bit, and erases each key
as soon as it has been used. Register `i` holds the derivation key for the next counter whose
lowest one-bit is bit `i`. A transaction with counter `n` (lowest one-bit `k`):

1. takes register `k`, the derivation key of `n` (the host derives the same key from the BDK
   and the KSN, walking the counter's one-bits);
2. if `n` has fewer than 16 one-bits, derives registers `k-1 .. 0` from it (the keys of
   `n | 2^i`, usage "key derivation"); a counter with 16 one-bits has no valid children;
3. erases register `k` and moves to the next valid counter (`dukpt.next_counter`).

"Load Initial Key" fills register `i` with the key of counter `2^i` and drops the IK. Every key
the device still holds derives only keys of counters it has *not* used yet, so whoever copies
the device's files (a stolen SD card) cannot recompute the key of any past transaction: AES is
one-way in its key here (the derivation is AES-ECB under the key being protected).

The state (next counter + registers) is one file in the key directory, saved durably
**before** the transaction's key is used, so a counter is never used twice and an erased key is
never on disk again. The file has two fixed slots rewritten in place (`slots.py`): a save
needs no new disk space, so a full disk does not stop a tap, and the erased key is overwritten
in the file's own blocks in both copies; what flash wear-levelling keeps below the file system
is beyond software (the README says which deployments this suits).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from terminal.errors import KeyMaterialError, KeyStateUnsaved
from terminal.protection.dukpt import (
    MAX_ONE_BITS,
    DukptOriginator,
    InitialKeyId,
    KeyType,
    KeyUsage,
    derivation_data,
    derive_key,
    is_valid_counter,
    next_counter,
)
from terminal.protection.slots import SlotFile, SlotFileDamaged, fsync_dir, wipe

REGISTERS_FILE = "dukpt-registers"
REGISTER_COUNT = 32  # one per bit of the 32-bit transaction counter
_MAGIC = "ev-terminal dukpt-registers v1"
_MAX_FILE_BYTES = 8192


def _low_bit(counter: int) -> int:
    return (counter & -counter).bit_length() - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FutureKeys:
    """The device's DUKPT state: the next transaction counter and the future-key registers.

    `counter` is the next counter to use (None once the key is exhausted); `registers` maps a
    bit index to the derivation key of the next counter whose lowest one-bit it is. Its repr
    hides every key."""

    initial_key_id: InitialKeyId
    key_type: KeyType
    counter: int | None
    registers: Mapping[int, bytes] = field(repr=False)

    def __repr__(self) -> str:
        counter = "exhausted" if self.counter is None else f"{self.counter:#010x}"
        return (
            f"FutureKeys(initial_key_id={self.initial_key_id.hex()}, key_type="
            f"{self.key_type.label}, counter={counter}, registers={len(self.registers)})"
        )

    @classmethod
    def load_initial_key(cls, initial_key: bytes, initial_key_id: InitialKeyId) -> FutureKeys:
        """The standard's "Load Initial Key": register i gets the key of counter 2^i; the IK
        itself is not kept."""
        return cls.after(initial_key, initial_key_id, 0)

    @classmethod
    def after(cls, initial_key: bytes, initial_key_id: InitialKeyId, last: int) -> FutureKeys:
        """The registers a device holds once counter `last` has been used (0: none yet),
        derived from the IK: for a device whose IK and counter were kept on disk, converted
        once. Register i holds the key of (the next counter's bits above i) | 2^i, for each
        bit i at or above the next counter's lowest one-bit that is not set in it."""
        key_type = KeyType.for_key(initial_key)
        nxt = next_counter(last)
        if nxt is None:
            return cls(initial_key_id=initial_key_id, key_type=key_type, counter=None, registers={})
        originator = DukptOriginator(initial_key=initial_key, initial_key_id=initial_key_id)
        registers: dict[int, bytes] = {}
        for bit in range(_low_bit(nxt), REGISTER_COUNT):
            if bit != _low_bit(nxt) and nxt >> bit & 1:
                continue
            owner = (nxt >> (bit + 1) << (bit + 1)) | 1 << bit
            if is_valid_counter(owner):
                registers[bit] = originator.transaction_key(owner)
        return cls(
            initial_key_id=initial_key_id, key_type=key_type, counter=nxt, registers=registers
        )

    def take(self) -> tuple[int, bytes, FutureKeys]:
        """The next transaction: its counter, its derivation key, and the state after it (the
        register used erased, the registers below it filled from it). KeyMaterialError when
        the key is exhausted or the register it needs is missing (damaged state)."""
        n = self.counter
        if n is None:
            raise KeyMaterialError(
                "DUKPT transaction counter exhausted; the device needs a new initial key"
            )
        low = _low_bit(n)
        key = self.registers.get(low)
        if key is None:
            raise KeyMaterialError(f"DUKPT register {low} is empty for counter {n:#010x}")
        registers = {bit: k for bit, k in self.registers.items() if bit != low}
        if n.bit_count() < MAX_ONE_BITS:
            for bit in range(low - 1, -1, -1):
                registers[bit] = self._derive(key, n | 1 << bit)
        nxt = next_counter(n)
        after = FutureKeys(
            initial_key_id=self.initial_key_id,
            key_type=self.key_type,
            counter=nxt,
            registers=registers if nxt is not None else {},
        )
        return n, key, after

    def _derive(self, key: bytes, counter: int) -> bytes:
        context = self.initial_key_id.derivation_id + counter.to_bytes(4, "big")
        data = derivation_data(KeyUsage.KEY_DERIVATION, self.key_type, context)
        return derive_key(key, self.key_type, data)

    # -- the file -----------------------------------------------------------------------------
    def to_text(self) -> str:
        lines = [
            _MAGIC,
            f"ikid {self.initial_key_id.hex()}",
            f"key_type {self.key_type.label}",
            "counter exhausted" if self.counter is None else f"counter {self.counter:08X}",
            *(
                f"register {bit:02d} {self.registers[bit].hex().upper()}"
                for bit in sorted(self.registers)
            ),
        ]
        body = "\n".join(lines) + "\n"
        return body + f"sha256 {hashlib.sha256(body.encode('ascii')).hexdigest()}\n"

    @classmethod
    def from_text(cls, path: Path, text: str) -> FutureKeys:
        """Parse the file; KeyMaterialError naming it if it is torn, altered or malformed."""
        body, _, check = text.rpartition("sha256 ")
        if (
            not body.startswith(_MAGIC + "\n")
            or check.strip() != hashlib.sha256(body.encode("ascii")).hexdigest()
        ):
            raise KeyMaterialError(f"{path}: DUKPT register file is damaged (checksum)")
        try:
            fields = [line.split(" ") for line in body.splitlines()[1:]]
            ikid = InitialKeyId.from_hex(_one(fields.pop(0), "ikid"))
            key_type = KeyType.from_label(_one(fields.pop(0), "key_type"))
            counter_text = _one(fields.pop(0), "counter")
            counter = None if counter_text == "exhausted" else int(counter_text, 16)
            registers: dict[int, bytes] = {}
            for item in fields:
                if len(item) != 3 or item[0] != "register":
                    raise ValueError("not a register line")
                bit, key = int(item[1]), bytes.fromhex(item[2])
                if not 0 <= bit < REGISTER_COUNT or len(key) != key_type.length:
                    raise ValueError("register out of range")
                registers[bit] = key
        except (ValueError, IndexError, KeyMaterialError) as exc:
            raise KeyMaterialError(f"{path}: malformed DUKPT register file: {exc}") from None
        if counter is not None and not is_valid_counter(counter):
            raise KeyMaterialError(f"{path}: counter {counter:#010x} is not a valid DUKPT counter")
        return cls(initial_key_id=ikid, key_type=key_type, counter=counter, registers=registers)


def _one(item: list[str], name: str) -> str:
    if len(item) != 2 or item[0] != name:
        raise ValueError(f"expected {name}")
    return item[1]


class RegisterStore(Protocol):
    """Where the device's DUKPT state is kept.

    Contract: `load` returns the last state passed to `save`, or raises KeyMaterialError when
    it is missing or unreadable (never a fresh start); `save` returns only once the state is
    durable and the state it replaces is gone; if it raises, the new state must not be used."""

    def load(self) -> FutureKeys:
        """The current state."""
        ...

    def save(self, keys: FutureKeys) -> None:
        """Make `keys` the current state, durably, before returning."""
        ...


class FileRegisterStore:
    """A `RegisterStore` in one 0600 slot file (`slots.py`), rewritten in place so a save
    never needs new disk space; one process owns it (the daemon holds the key directory's
    lock, see `shell/dir_lock.py`)."""

    __slots__ = ("_file",)

    def __init__(self, path: Path) -> None:
        self._file = SlotFile(path)

    def __repr__(self) -> str:
        return f"FileRegisterStore({str(self._file.path)!r})"

    @property
    def path(self) -> Path:
        return self._file.path

    def exists(self) -> bool:
        return self._file.path.exists() or self._file.tmp.exists()

    def in_place(self) -> bool:
        """True once the file is the slot file, whose saves need no new space."""
        return self._file.in_place()

    def load(self) -> FutureKeys:
        """Read the state. If the making of the slot file was cut short after the new file was
        whole (the old one zeroed, the rename not done), the new file is the state."""
        try:
            return self._read(self._file)
        except KeyMaterialError:
            if not self._file.tmp.exists():
                raise
        keys = self._read(SlotFile(self._file.tmp))
        os.replace(self._file.tmp, self._file.path)
        fsync_dir(self._file.path.parent)
        self._file = SlotFile(self._file.path)
        return keys

    def _read(self, file: SlotFile) -> FutureKeys:
        path = file.path
        try:
            raw = file.read(_MAX_FILE_BYTES)
        except FileNotFoundError:
            raise KeyMaterialError(
                f"{path}: DUKPT register file missing; re-provision the device"
            ) from None
        except SlotFileDamaged:
            raise KeyMaterialError(f"{path}: DUKPT register file is damaged (checksum)") from None
        except ValueError:
            raise KeyMaterialError(f"{path}: DUKPT register file too large") from None
        except OSError as exc:
            raise KeyMaterialError(f"{path}: unreadable: {exc.strerror}") from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyMaterialError(f"{path}: DUKPT register file is damaged") from None
        return FutureKeys.from_text(path, text)

    def save(self, keys: FutureKeys, *, exclusive: bool = False) -> None:
        """Make `keys` the state before returning: written over the older copy in place, then
        over the other (the erased keys leave both; `slots.py`). With `exclusive`, refuse to
        replace an existing state (provisioning). KeyStateUnsaved if it could not be written:
        the state on disk is then the old one or the new one, and the new one is not used."""
        if exclusive and self.exists():
            raise KeyMaterialError(f"{self.path}: already exists; refusing to reset DUKPT keys")
        try:
            self._file.write(keys.to_text().encode("ascii"))
        except OSError as exc:
            raise KeyStateUnsaved(f"{self.path}: cannot save DUKPT state: {exc.strerror}") from exc


def wipe_file(path: Path, *, unlink: bool = True) -> None:
    """Overwrite a file's bytes with zeros in place and fsync, then (by default) remove it."""
    wipe(path, unlink=unlink)
