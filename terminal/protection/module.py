"""The protection module: clear card data in, token + masked PAN + encrypted blob out.

With the card kernel, this is the only place where clear card data lives: in memory, for the
one call to `ProtectionModule.protect`. What it returns, a `ProtectedCard`, carries no PAN,
no track 2 and no EMV data in clear, and may be logged, journaled and sent. Python cannot
reliably erase an immutable `str`; the serialized plaintext is held in a `bytearray` and
zeroed after encryption, and nothing here keeps a reference to the inputs.

Per transaction (ANSI X9.24-3-2017):

1. take the next transaction's derivation key from the future-key registers and persist the
   state after it (`RegisterStore.save`: counter advanced, that key erased) **before** the key
   is used, so a restart can never reuse a KSN and no used key stays on disk
   (`registers.py`);
2. derive the *data encryption, encrypt* and *MAC generation* working keys from it;
3. encrypt the card data (AES-CBC, random IV) and authenticate it (AES-CMAC), see `blob.py`.

The token (`token.py`) is computed from the PAN with the fleet token key.

This module is not thread-safe; the daemon thread owns it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from terminal.errors import CardError, KeyMaterialError
from terminal.protection.blob import (
    IV_LENGTH,
    CardData,
    EncryptedBlob,
    cmac,
    encode_card_data,
    mac_input,
    tag_hex,
)
from terminal.protection.dukpt import KeyUsage, Ksn, derive_working_key
from terminal.protection.keys import load_device_keys
from terminal.protection.registers import RegisterStore
from terminal.protection.token import TokenKey, canonical_pan, card_token, mask_pan, rfid_token

# EMV Book 3 Annex A, tag 5F24 "Application Expiration Date" is YYMMDD; the kernel hands the
# YYMM part, as track 2 carries it (ISO/IEC 7813).
_EXPIRY_LENGTH = 4
_CENTURY = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtectedCard:
    """A presented payment card after protection: safe to log, journal and send.

    ``token`` recognises the card fleet-wide; ``masked_pan`` / ``last4`` are for the screen and
    receipt; ``brand`` is passed through from the kernel; ``blob`` is the encrypted data the
    gateway decrypts to authorize.
    """

    token: str
    masked_pan: str
    last4: str
    brand: str
    expiry_month: int
    expiry_year: int
    blob: EncryptedBlob

    def to_json(self) -> dict[str, Any]:
        """The wire form, for the authorization request body."""
        return {
            "token": self.token,
            "masked_pan": self.masked_pan,
            "last4": self.last4,
            "brand": self.brand,
            "expiry_month": self.expiry_month,
            "expiry_year": self.expiry_year,
            "blob": self.blob.to_json(),
        }


def parse_expiry(expiry: str) -> tuple[int, int]:
    """``YYMM`` → (month, four-digit year); anything else is a malformed card answer."""
    if len(expiry) != _EXPIRY_LENGTH or not (expiry.isascii() and expiry.isdigit()):
        raise CardError("the expiry date is not YYMM")
    year, month = int(expiry[:2]), int(expiry[2:])
    if not 1 <= month <= 12:
        raise CardError("the expiry month is not 01..12")
    return month, _CENTURY + year


class ProtectionModule:
    """Turns a card's clear data into a `ProtectedCard`; built once by the composition root.

    Dependencies arrive as values: the fleet token key, the store of the device's DUKPT
    future-key registers, and the source of random IVs (`os.urandom` unless a test passes its
    own). The registers are read once, here, so a missing or damaged file stops start-up.
    """

    __slots__ = ("_keys", "_last_counter", "_random_bytes", "_registers", "_token_key")

    def __init__(
        self,
        *,
        token_key: TokenKey,
        registers: RegisterStore,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._token_key = token_key
        self._registers = registers
        self._random_bytes = random_bytes
        self._keys = registers.load()
        self._last_counter = 0

    @classmethod
    def from_key_dir(cls, key_dir: Path) -> ProtectionModule:
        """Load a device key directory written by `provision_fleet` (see `keys.py`)."""
        keys = load_device_keys(key_dir)
        return cls(token_key=keys.token_key, registers=keys.registers)

    def __repr__(self) -> str:
        return f"ProtectionModule({self._keys!r}, keys=<hidden>)"

    @property
    def last_counter(self) -> int:
        """The last DUKPT transaction counter this module used (0 before its first)."""
        return self._last_counter

    @property
    def next_counter(self) -> int | None:
        """The counter the next transaction will use; None once the key is exhausted."""
        return self._keys.counter

    def rfid_token(self, uid: bytes) -> str:
        """The fleet-wide token of an RFID identification card's UID."""
        return rfid_token(self._token_key, uid)

    def card_token(self, pan: str) -> str:
        """The fleet-wide token of a PAN (what `protect` puts in `ProtectedCard.token`);
        no DUKPT key is used (a tap that only stops a session needs nothing more)."""
        return card_token(self._token_key, canonical_pan(pan))

    def store_ready(self) -> None:
        """Save the current state again, taking no key: KeyStateUnsaved while it cannot be
        written (a full disk before the register file was a slot file, an I/O error). The
        first call on a device provisioned before the slot file makes it (`slots.py`), so
        later saves need no new disk space."""
        self._registers.save(self._keys)

    def _take_key(self) -> tuple[int, bytes]:
        """The next counter and its derivation key; the state after it is durable (that
        key erased on disk) before the key is returned."""
        counter, key, after = self._keys.take()
        self._registers.save(after)
        self._keys = after
        self._last_counter = counter
        return counter, key

    def protect(
        self,
        *,
        pan: str,
        expiry: str,
        pan_sequence: str | None,
        track2: bytes | None,
        emv_data: tuple[tuple[int, bytes], ...],
        brand: str,
    ) -> ProtectedCard:
        """Protect one presented card; CardError for malformed data, KeyMaterialError if no
        key can be taken (exhausted, damaged, or its state cannot be saved: no key is used)."""
        digits = canonical_pan(pan)
        month, year = parse_expiry(expiry)
        data = CardData(
            pan=digits,
            expiry=expiry,
            pan_sequence=pan_sequence,
            track2=track2.hex().upper() if track2 is not None else None,
            emv=[[tag_hex(tag), value.hex().upper()] for tag, value in emv_data],
        )
        plaintext = bytearray(encode_card_data(data))
        try:
            blob = self._encrypt(plaintext)
        finally:
            plaintext[:] = bytes(len(plaintext))
        return ProtectedCard(
            token=card_token(self._token_key, digits),
            masked_pan=mask_pan(digits),
            last4=digits[-4:],
            brand=brand,
            expiry_month=month,
            expiry_year=year,
            blob=blob,
        )

    def _encrypt(self, plaintext: bytearray) -> EncryptedBlob:
        counter, transaction_key = self._take_key()
        ksn = Ksn(initial_key_id=self._keys.initial_key_id, counter=counter)
        key_type = self._keys.key_type
        data_key = derive_working_key(transaction_key, ksn, KeyUsage.DATA_ENCRYPT, key_type)
        mac_key = derive_working_key(transaction_key, ksn, KeyUsage.MAC_GENERATION, key_type)
        iv = self._random_bytes(IV_LENGTH)
        if len(iv) != IV_LENGTH:
            raise KeyMaterialError("the random source gave an IV of the wrong length")
        padder = padding.PKCS7(algorithms.AES.block_size).padder()
        padded = bytearray(padder.update(bytes(plaintext)) + padder.finalize())
        try:
            encryptor = Cipher(algorithms.AES(data_key), modes.CBC(iv)).encryptor()
            ciphertext = encryptor.update(bytes(padded)) + encryptor.finalize()
        finally:
            padded[:] = bytes(len(padded))
        mac = cmac(mac_key, mac_input(ksn, key_type, iv, ciphertext))
        return EncryptedBlob(ksn=ksn, key_type=key_type, iv=iv, ciphertext=ciphertext, mac=mac)
