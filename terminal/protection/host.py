"""The receiving side of card-data protection, for the gateway: BDK + blob → card data.

ANSI X9.24-3-2017, host derivation: from the BDK and the KSN in the blob the host derives
the device's Initial Key, the transaction's derivation key and the two working keys the device used
(*data encryption, encrypt* and *MAC generation*). The blob's CMAC is checked, in constant
time, before anything is decrypted (see `blob.py` for the construction).

The gateway imports this module; nothing in `terminal.protection` imports the gateway. With
several BDKs, the gateway picks one by `blob_bdk_id` (the leftmost 32 bits of the KSN).

Errors: a blob that is malformed, names an invalid counter, or fails authentication raises
`ProtectedDataError`; the gateway answers such a request with a 4xx and never "approved". The
message says what is wrong with the blob and never includes key or card data.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from terminal.errors import KeyMaterialError, ProtectedDataError
from terminal.protection.blob import CardData, EncryptedBlob, decode_card_data
from terminal.protection.dukpt import (
    KeyType,
    KeyUsage,
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    is_valid_counter,
)


def _as_blob(blob: Mapping[str, object] | EncryptedBlob) -> EncryptedBlob:
    return blob if isinstance(blob, EncryptedBlob) else EncryptedBlob.from_json(blob)


def blob_bdk_id(blob: Mapping[str, object] | EncryptedBlob) -> str:
    """The BDK ID (8 hex digits) a blob was made under, to choose the BDK to decrypt with."""
    return _as_blob(blob).ksn.initial_key_id.bdk_id.hex().upper()


def decrypt_blob(bdk: bytes, blob: Mapping[str, object] | EncryptedBlob) -> CardData:
    """Verify and decrypt a card-data blob (its wire JSON or the parsed value).

    Returns the card data as a dict: ``pan``, ``expiry`` (YYMM), ``pan_sequence``,
    ``track2`` (hex) and ``emv`` (``[tag hex, value hex]`` pairs in the kernel's order).
    """
    parsed = _as_blob(blob)
    ksn = parsed.ksn
    if not is_valid_counter(ksn.counter):
        raise ProtectedDataError(f"card data blob: KSN counter {ksn.counter:#010x} is not valid")
    bdk_type = KeyType.for_key(bdk)
    if parsed.key_type.bits > bdk_type.bits:
        raise KeyMaterialError(
            f"card data blob: {parsed.key_type.label} keys cannot come from an {bdk_type.label} BDK"
        )
    initial_key = derive_initial_key(bdk, ksn.initial_key_id)
    transaction_key = derive_transaction_key(initial_key, ksn)
    mac_key = derive_working_key(transaction_key, ksn, KeyUsage.MAC_GENERATION, parsed.key_type)
    verifier = CMAC(algorithms.AES(mac_key))
    verifier.update(parsed.mac_input())
    try:
        verifier.verify(parsed.mac)
    except InvalidSignature:
        raise ProtectedDataError(
            "card data blob: authentication failed (altered, or not made under this BDK)"
        ) from None
    data_key = derive_working_key(transaction_key, ksn, KeyUsage.DATA_ENCRYPT, parsed.key_type)
    decryptor = Cipher(algorithms.AES(data_key), modes.CBC(parsed.iv)).decryptor()
    padded = bytearray(decryptor.update(parsed.ciphertext) + decryptor.finalize())
    try:
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        try:
            plaintext = unpadder.update(bytes(padded)) + unpadder.finalize()
        except ValueError:
            raise ProtectedDataError("card data blob: bad padding") from None
        return decode_card_data(plaintext)
    finally:
        padded[:] = bytes(len(padded))
