"""The encrypted card-data blob: what the kiosk sends to the gateway for authorization.

Construction (encrypt-then-MAC, both keys DUKPT working keys of the same transaction,
ANSI X9.24-3-2017, working key derivation):

- plaintext: the card's sensitive data as compact JSON with sorted keys (`CardData`);
- encryption: AES-CBC (NIST SP 800-38A) with PKCS#7 padding under the *data encryption,
  encrypt* working key (key usage 0x3000), with a random 16-byte IV;
- authentication: AES-CMAC (NIST SP 800-38B) under the *MAC generation* working key
  (key usage 0x2000) over the format name, key type, KSN, IV and ciphertext, so a blob that
  was altered, or replayed under another KSN, is refused before anything is decrypted.

On the wire (JSON, all strings)::

    {"format": "ev-terminal/card-blob/v1", "ksn": "<24 hex>", "key_type": "AES-128",
     "cipher": "AES-CBC-PKCS7", "iv": "<base64>", "ciphertext": "<base64>",
     "mac_alg": "AES-CMAC", "mac": "<base64>"}

The receiving side derives the same two keys from its BDK and the KSN (`host.py`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from terminal.errors import ProtectedDataError, TerminalError
from terminal.protection.dukpt import KeyType, Ksn

BLOB_FORMAT = "ev-terminal/card-blob/v1"
CIPHER = "AES-CBC-PKCS7"
MAC_ALGORITHM = "AES-CMAC"
IV_LENGTH = 16
MAC_LENGTH = 16
_WIRE_FIELDS = frozenset(
    {"format", "ksn", "key_type", "cipher", "iv", "ciphertext", "mac_alg", "mac"}
)


class CardData(TypedDict):
    """The sensitive data inside a blob, as the gateway gets it back from `decrypt_blob`.

    ``emv`` keeps the card kernel's tags in order as ``[tag hex, value hex]`` pairs.
    """

    pan: str
    expiry: str
    pan_sequence: str | None
    track2: str | None
    emv: list[list[str]]


def tag_hex(tag: int) -> str:
    """A BER-TLV tag number as its encoded bytes in hex (0x5F34 → ``5F34``, EMV Book 3 B.1)."""
    if tag < 0:
        raise ValueError("a tag is not negative")
    text = f"{tag:X}"
    return text if len(text) % 2 == 0 else "0" + text


def encode_card_data(data: CardData) -> bytes:
    """Compact, key-sorted JSON, so the same card data always gives the same plaintext."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")


def _str_or_none(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtectedDataError("card data blob: a field has the wrong type")


def decode_card_data(plaintext: bytes) -> CardData:
    """Parse and check the plaintext of a blob; ProtectedDataError if it is not card data."""
    try:
        raw = json.loads(plaintext.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtectedDataError("card data blob: plaintext is not JSON") from None
    if not isinstance(raw, dict) or set(raw) != set(CardData.__annotations__):
        raise ProtectedDataError("card data blob: plaintext has the wrong fields")
    pan, expiry, emv = raw["pan"], raw["expiry"], raw["emv"]
    if not isinstance(pan, str) or not isinstance(expiry, str) or not isinstance(emv, list):
        raise ProtectedDataError("card data blob: a field has the wrong type")
    pairs: list[list[str]] = []
    for item in emv:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            raise ProtectedDataError("card data blob: emv is not a list of [tag, value] pairs")
        pairs.append([item[0], item[1]])
    return CardData(
        pan=pan,
        expiry=expiry,
        pan_sequence=_str_or_none(raw["pan_sequence"]),
        track2=_str_or_none(raw["track2"]),
        emv=pairs,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedBlob:
    """One transaction's encrypted card data, ready for a JSON wire body (`to_json`).

    Holds no clear card data and no key; its repr shows only the KSN and sizes.
    """

    ksn: Ksn
    key_type: KeyType
    iv: bytes
    ciphertext: bytes
    mac: bytes

    def __repr__(self) -> str:
        return (
            f"EncryptedBlob(ksn={self.ksn.hex()}, key_type={self.key_type.label}, "
            f"ciphertext=<{len(self.ciphertext)} bytes>)"
        )

    def mac_input(self) -> bytes:
        """What the CMAC covers: format and key type (NUL-terminated), KSN, IV, ciphertext."""
        return mac_input(self.ksn, self.key_type, self.iv, self.ciphertext)

    def to_json(self) -> dict[str, str]:
        """The wire form: every field a string (hex KSN, base64 bytes)."""
        return {
            "format": BLOB_FORMAT,
            "ksn": self.ksn.hex(),
            "key_type": self.key_type.label,
            "cipher": CIPHER,
            "iv": base64.b64encode(self.iv).decode("ascii"),
            "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"),
            "mac_alg": MAC_ALGORITHM,
            "mac": base64.b64encode(self.mac).decode("ascii"),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> EncryptedBlob:
        """Parse the wire form; ProtectedDataError naming the field that is wrong."""
        if set(body) != _WIRE_FIELDS:
            raise ProtectedDataError("card data blob: wrong set of fields")
        fields: dict[str, str] = {}
        for name in _WIRE_FIELDS:
            value = body[name]
            if not isinstance(value, str):
                raise ProtectedDataError(f"card data blob: {name} is not a string")
            fields[name] = value
        if fields["format"] != BLOB_FORMAT:
            raise ProtectedDataError(f"card data blob: unknown format {fields['format']!r}")
        if fields["cipher"] != CIPHER or fields["mac_alg"] != MAC_ALGORITHM:
            raise ProtectedDataError("card data blob: unsupported cipher or MAC algorithm")
        try:
            ksn = Ksn.from_hex(fields["ksn"])
        except ValueError:
            raise ProtectedDataError("card data blob: ksn is not 24 hex digits") from None
        try:
            key_type = KeyType.from_label(fields["key_type"])
        except TerminalError:
            raise ProtectedDataError("card data blob: unknown key_type") from None
        decoded: dict[str, bytes] = {}
        for name in ("iv", "ciphertext", "mac"):
            try:
                decoded[name] = base64.b64decode(fields[name], validate=True)
            except (binascii.Error, ValueError):
                raise ProtectedDataError(f"card data blob: {name} is not base64") from None
        if len(decoded["iv"]) != IV_LENGTH or len(decoded["mac"]) != MAC_LENGTH:
            raise ProtectedDataError("card data blob: iv or mac has the wrong length")
        if not decoded["ciphertext"] or len(decoded["ciphertext"]) % IV_LENGTH:
            raise ProtectedDataError("card data blob: ciphertext is not whole AES blocks")
        return cls(
            ksn=ksn,
            key_type=key_type,
            iv=decoded["iv"],
            ciphertext=decoded["ciphertext"],
            mac=decoded["mac"],
        )


def mac_input(ksn: Ksn, key_type: KeyType, iv: bytes, ciphertext: bytes) -> bytes:
    """The bytes the blob's CMAC covers (fixed-length KSN and IV make it unambiguous)."""
    header = f"{BLOB_FORMAT}\x00{key_type.label}\x00".encode("ascii")
    return header + ksn.to_bytes() + iv + ciphertext


def cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B) of `message`."""
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return c.finalize()
