"""AES DUKPT key derivation, per ANSI X9.24-3-2017 (Derived Unique Key Per Transaction).

Both sides of the scheme live here, as pure functions over bytes:

- the **receiving (host) side** derives a device's Initial Key (IK) from the Base Derivation
  Key (BDK) and the device's Initial Key ID (the standard's "Derive Initial Key"), and a
  transaction's derivation key and working keys from the BDK and the transaction's KSN;
- the **originating (device) side**, `DukptOriginator`, holds the IK and the Initial Key ID
  and derives, for a transaction counter, the transaction (derivation) key and its working
  keys. The counter rules (never zero, at most 16 one-bits, skip the rest, stop after
  0xFFFF0000) are `is_valid_counter` and `next_counter`.

Intermediate derivation keys: the device itself keeps the standard's future-key registers
and erases each key once used (`registers.py`), which gives forward secrecy: a captured device
cannot recompute the keys of past transactions. `DukptOriginator` derives the same keys **on
demand** from the IK (for counter `c` it walks the one-bits of `c` from the most significant
down, one AES derivation per bit, at most 16), exactly as the host does: it serves the tests
(the published vectors, and a model of the standard's register device past the first skipped
counter) and the one-time conversion of a key directory that still holds an IK.

Key derivation (the standard's "Derive Key"): the derived key is the concatenation of
AES-ECB(derivation key, derivation data) over as many 16-byte blocks as the derived key
needs, with the block number in byte 1 of the derivation data, truncated to the key length.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from terminal.errors import KeyMaterialError

# X9.24-3-2017 key serial number: the KSN is 96 bits, the Initial Key ID (BDK ID ‖ derivation
# ID) 64 of them and the transaction counter the last 32.
KSN_LENGTH = 12
INITIAL_KEY_ID_LENGTH = 8
BDK_ID_LENGTH = 4
DERIVATION_ID_LENGTH = 4

# Counter rule: a counter with more than 16 one-bits is never used; 0xFFFF0000 is therefore the last
# usable counter, after which the device must be given a new initial key.
MAX_ONE_BITS = 16
MAX_COUNTER = 0xFFFF_0000
_COUNTER_BITS = 32

# Derivation data byte 0: version of the derivation data format.
_DERIVATION_DATA_VERSION = 0x01
_AES_BLOCK = 16


class KeyType(enum.Enum):
    """Key types AES DUKPT derives, with the algorithm indicator of the derivation data.

    X9.24-3-2017, derivation data, "Key Type" (derivation data bytes 4-5, and the key length
    in bits in bytes 6-7). The TDEA working key types (0x0000, 0x0001) are not offered here.
    """

    AES128 = (0x0002, 128)
    AES192 = (0x0003, 192)
    AES256 = (0x0004, 256)

    @property
    def algorithm_indicator(self) -> int:
        """Derivation data bytes 4-5."""
        return self.value[0]

    @property
    def bits(self) -> int:
        """Key length in bits (derivation data bytes 6-7)."""
        return self.value[1]

    @property
    def length(self) -> int:
        """Key length in bytes."""
        return self.value[1] // 8

    @property
    def label(self) -> str:
        """The name on the wire and in key files, e.g. ``AES-128``."""
        return f"AES-{self.bits}"

    @classmethod
    def for_key(cls, key: bytes) -> KeyType:
        """The key type of an AES key of this length; KeyMaterialError for any other."""
        for key_type in cls:
            if key_type.length == len(key):
                return key_type
        raise KeyMaterialError(f"an AES key is 16, 24 or 32 bytes long, not {len(key)}")

    @classmethod
    def from_label(cls, label: str) -> KeyType:
        """The key type named ``AES-128``, ``AES-192`` or ``AES-256``."""
        for key_type in cls:
            if key_type.label == label:
                return key_type
        raise KeyMaterialError(f"unknown AES key type {label!r}")


class KeyUsage(enum.IntEnum):
    """Key usage indicators (derivation data bytes 2-3), X9.24-3-2017 table "Key Usage".

    Usages name the originating device's use: a blob the device encrypts with
    DATA_ENCRYPT is decrypted by the host with the same key, derived with the same usage.
    """

    KEY_ENCRYPTION = 0x0002
    PIN_ENCRYPTION = 0x1000
    MAC_GENERATION = 0x2000
    MAC_VERIFICATION = 0x2001
    MAC_BOTH_WAYS = 0x2002
    DATA_ENCRYPT = 0x3000
    DATA_DECRYPT = 0x3001
    DATA_BOTH_WAYS = 0x3002
    KEY_DERIVATION = 0x8000
    KEY_DERIVATION_INITIAL_KEY = 0x8001


@dataclass(frozen=True, slots=True, kw_only=True)
class InitialKeyId:
    """The 64-bit Initial Key ID: BDK ID (which BDK the host uses) ‖ derivation ID (which device).

    X9.24-3-2017; it is the leftmost 64 bits of every KSN the device sends.
    """

    bdk_id: bytes
    derivation_id: bytes

    def __post_init__(self) -> None:
        if len(self.bdk_id) != BDK_ID_LENGTH or len(self.derivation_id) != DERIVATION_ID_LENGTH:
            raise ValueError("an Initial Key ID is a 4-byte BDK ID and a 4-byte derivation ID")

    @classmethod
    def from_bytes(cls, data: bytes) -> InitialKeyId:
        """Split the 8-byte Initial Key ID."""
        if len(data) != INITIAL_KEY_ID_LENGTH:
            raise ValueError(f"an Initial Key ID is 8 bytes, not {len(data)}")
        return cls(bdk_id=data[:BDK_ID_LENGTH], derivation_id=data[BDK_ID_LENGTH:])

    @classmethod
    def from_hex(cls, text: str) -> InitialKeyId:
        """Parse 16 hex digits."""
        return cls.from_bytes(bytes.fromhex(text))

    def to_bytes(self) -> bytes:
        """The 8 bytes, BDK ID first."""
        return self.bdk_id + self.derivation_id

    def hex(self) -> str:
        """16 upper-case hex digits."""
        return self.to_bytes().hex().upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class Ksn:
    """A Key Serial Number: the Initial Key ID and the 32-bit transaction counter (X9.24-3-2017)."""

    initial_key_id: InitialKeyId
    counter: int

    def __post_init__(self) -> None:
        if not 0 <= self.counter < 1 << _COUNTER_BITS:
            raise ValueError("the transaction counter is 32 bits")

    @classmethod
    def from_bytes(cls, data: bytes) -> Ksn:
        """Parse the 12-byte KSN."""
        if len(data) != KSN_LENGTH:
            raise ValueError(f"a KSN is 12 bytes, not {len(data)}")
        return cls(
            initial_key_id=InitialKeyId.from_bytes(data[:INITIAL_KEY_ID_LENGTH]),
            counter=int.from_bytes(data[INITIAL_KEY_ID_LENGTH:], "big"),
        )

    @classmethod
    def from_hex(cls, text: str) -> Ksn:
        """Parse 24 hex digits."""
        return cls.from_bytes(bytes.fromhex(text))

    def to_bytes(self) -> bytes:
        """The 12 bytes: Initial Key ID ‖ big-endian counter."""
        return self.initial_key_id.to_bytes() + self.counter.to_bytes(4, "big")

    def hex(self) -> str:
        """24 upper-case hex digits, as the wire carries it."""
        return self.to_bytes().hex().upper()


def is_valid_counter(counter: int) -> bool:
    """Whether a device may use this transaction counter (X9.24-3-2017 counter rules).

    Valid counters are 1..0xFFFF0000 with at most 16 one-bits; 0xFFFFFFFF is reserved for
    the DUKPT update key and has 32 one-bits anyway.
    """
    return 0 < counter <= MAX_COUNTER and counter.bit_count() <= MAX_ONE_BITS


def next_counter(counter: int) -> int | None:
    """The first valid counter after `counter`, or None when the key is exhausted.

    Counting up from 0 gives 1. A counter with more than 16 one-bits is skipped by adding
    its lowest one-bit, which clears a run of ones; this is the standard's "Set Bit" skip.
    """
    candidate = counter + 1
    while candidate.bit_count() > MAX_ONE_BITS:
        candidate += candidate & -candidate
    return candidate if candidate <= MAX_COUNTER else None


def derivation_data(usage: KeyUsage, key_type: KeyType, context: bytes) -> bytes:
    """The 16-byte derivation data of X9.24-3-2017 for the first block.

    ``context`` is the 8-byte Initial Key ID (for the initial key) or the 4-byte derivation
    ID ‖ 4-byte counter (for intermediate and working keys).
    """
    if len(context) != 8:
        raise ValueError("derivation data context is 8 bytes")
    return (
        bytes([_DERIVATION_DATA_VERSION, 1])
        + int(usage).to_bytes(2, "big")
        + key_type.algorithm_indicator.to_bytes(2, "big")
        + key_type.bits.to_bytes(2, "big")
        + context
    )


def derive_key(derivation_key: bytes, key_type: KeyType, data: bytes) -> bytes:
    """X9.24-3-2017 "Derive Key": AES-ECB of the derivation data, one block per 128 bits of output.

    The derivation key may be any AES size; the output is `key_type.length` bytes. A working
    key stronger than the key it is derived from is refused, as the standard requires.
    """
    if key_type.bits > len(derivation_key) * 8:
        raise KeyMaterialError(
            f"cannot derive an {key_type.label} key from a {len(derivation_key) * 8}-bit key"
        )
    KeyType.for_key(derivation_key)
    # ECB over single, never-repeating derivation-data blocks is the standard's construction
    # (a keyed pseudo-random function), not bulk encryption.
    encryptor = Cipher(algorithms.AES(derivation_key), modes.ECB()).encryptor()  # noqa: S305 (see above)
    blocks = (key_type.length + _AES_BLOCK - 1) // _AES_BLOCK
    out = bytearray()
    for block in range(1, blocks + 1):
        out += encryptor.update(data[:1] + bytes([block]) + data[2:])
    return bytes(out[: key_type.length])


def _counter_context(initial_key_id: InitialKeyId, counter: int) -> bytes:
    return initial_key_id.derivation_id + counter.to_bytes(4, "big")


def derive_initial_key(bdk: bytes, initial_key_id: InitialKeyId) -> bytes:
    """The device's Initial Key from the BDK and its Initial Key ID ("Derive Initial Key").

    The IK has the BDK's own key type (AES-128 BDK → AES-128 IK, AES-256 → AES-256).
    """
    key_type = KeyType.for_key(bdk)
    data = derivation_data(KeyUsage.KEY_DERIVATION_INITIAL_KEY, key_type, initial_key_id.to_bytes())
    return derive_key(bdk, key_type, data)


def derive_transaction_key(initial_key: bytes, ksn: Ksn) -> bytes:
    """The transaction's derivation key from the IK, walking the counter's one-bits.

    Starting from the IK, for each one-bit of the counter from the most significant down,
    the key so far derives the next with the counter's bits down to that one
    (usage KEY_DERIVATION, the IK's key type). The result is the register the standard's
    device would hold for this counter.
    """
    if not is_valid_counter(ksn.counter):
        raise ValueError(f"transaction counter {ksn.counter:#010x} is not a valid DUKPT counter")
    key_type = KeyType.for_key(initial_key)
    key = initial_key
    working_counter = 0
    for bit in range(_COUNTER_BITS - 1, -1, -1):
        mask = 1 << bit
        if ksn.counter & mask:
            working_counter |= mask
            data = derivation_data(
                KeyUsage.KEY_DERIVATION,
                key_type,
                _counter_context(ksn.initial_key_id, working_counter),
            )
            key = derive_key(key, key_type, data)
    return key


def derive_working_key(
    transaction_key: bytes, ksn: Ksn, usage: KeyUsage, key_type: KeyType
) -> bytes:
    """A working key of `usage` and `key_type` from the transaction's derivation key."""
    data = derivation_data(usage, key_type, _counter_context(ksn.initial_key_id, ksn.counter))
    return derive_key(transaction_key, key_type, data)


def host_working_key(bdk: bytes, ksn: Ksn, usage: KeyUsage, key_type: KeyType) -> bytes:
    """The receiving side in one call: BDK + KSN → IK → transaction key → working key."""
    initial_key = derive_initial_key(bdk, ksn.initial_key_id)
    return derive_working_key(derive_transaction_key(initial_key, ksn), ksn, usage, key_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class DukptOriginator:
    """The originating device's DUKPT keys: its Initial Key and Initial Key ID.

    Counter bookkeeping (which counter comes next, persisted before use) belongs to the
    caller; this value only derives keys for a counter it is given. Its repr hides the key.
    """

    initial_key: bytes
    initial_key_id: InitialKeyId

    def __post_init__(self) -> None:
        KeyType.for_key(self.initial_key)

    def __repr__(self) -> str:
        return (
            f"DukptOriginator(key_type={self.key_type.label}, "
            f"initial_key_id={self.initial_key_id.hex()}, initial_key=<hidden>)"
        )

    @property
    def key_type(self) -> KeyType:
        """The IK's key type, which every intermediate derivation key shares."""
        return KeyType.for_key(self.initial_key)

    def ksn(self, counter: int) -> Ksn:
        """The KSN this device sends with a transaction counter."""
        return Ksn(initial_key_id=self.initial_key_id, counter=counter)

    def transaction_key(self, counter: int) -> bytes:
        """The derivation key for `counter` (the standard's intermediate derivation key)."""
        return derive_transaction_key(self.initial_key, self.ksn(counter))

    def working_key(self, counter: int, usage: KeyUsage, key_type: KeyType | None = None) -> bytes:
        """A working key for `counter`; the key type defaults to the IK's own."""
        return derive_working_key(
            self.transaction_key(counter),
            self.ksn(counter),
            usage,
            key_type if key_type is not None else self.key_type,
        )
