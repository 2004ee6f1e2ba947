"""Data object lists (EMV 4.4 Book 3, 5.4): the PDOL (9F38), CDOL1 (8C) and friends.

A DOL is a list of (tag, length) pairs with no values: the card names the data it wants and
how many bytes of each; the terminal answers with the values concatenated in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from terminal.card.tlv import read_length, read_tag
from terminal.errors import TlvError

# Book 3 5.4 pads and truncates by format. Numeric (n) terminal data objects, from the data
# element table of Book 3 Annex A1: amounts, codes, dates, times, counters.
NUMERIC_TAGS = frozenset(
    {
        0x9F02,  # Amount, Authorised (n12)
        0x9F03,  # Amount, Other (n12)
        0x5F2A,  # Transaction Currency Code (n3)
        0x5F36,  # Transaction Currency Exponent (n1)
        0x9F1A,  # Terminal Country Code (n3)
        0x9A,  # Transaction Date (n6 YYMMDD)
        0x9F21,  # Transaction Time (n6 HHMMSS)
        0x9C,  # Transaction Type (n2)
        0x9F35,  # Terminal Type (n2)
        0x9F15,  # Merchant Category Code (n4)
        0x9F41,  # Transaction Sequence Counter (n4-8)
        0x9F3C,  # Transaction Reference Currency Code (n3)
        0x9F3D,  # Transaction Reference Currency Exponent (n1)
    }
)
# Compressed numeric (cn) objects, padded on the right with 'F' nibbles.
COMPRESSED_NUMERIC_TAGS = frozenset({0x5A, 0x9F20})


@dataclass(frozen=True, slots=True, kw_only=True)
class DolEntry:
    """One entry of a DOL: the tag the card asks for and the number of bytes it wants."""

    tag: int
    length: int


def parse_dol(data: bytes) -> tuple[DolEntry, ...]:
    """Parse a DOL value (the content of 9F38, 8C, 8D, 9F49 ...).

    Raises `TlvError` if an entry is truncated or malformed."""
    raw = bytes(data)
    entries: list[DolEntry] = []
    pos = 0
    while pos < len(raw):
        tag, pos = read_tag(raw, pos, len(raw))
        length, pos = read_length(raw, pos, len(raw))
        entries.append(DolEntry(tag=tag, length=length))
    return tuple(entries)


def dol_length(entries: tuple[DolEntry, ...]) -> int:
    """The number of bytes the filled DOL occupies."""
    return sum(entry.length for entry in entries)


def fill_dol(entries: tuple[DolEntry, ...], values: Mapping[int, bytes]) -> bytes:
    """Concatenate the values the DOL asks for, following Book 3 5.4.

    - an object the terminal does not have (or a constructed one) is sent as zeros;
    - too long: numeric (n) values lose their leftmost bytes, all others their rightmost;
    - too short: numeric values get leading zeros, compressed numeric (cn) values trailing
      'FF' bytes, all others trailing zeros.
    """
    out = bytearray()
    for entry in entries:
        value = values.get(entry.tag)
        out += _fit(entry, value)
    return bytes(out)


def _fit(entry: DolEntry, value: bytes | None) -> bytes:
    size = entry.length
    if value is None:
        return bytes(size)
    if entry.tag in NUMERIC_TAGS:
        if len(value) >= size:
            return value[len(value) - size :]
        return bytes(size - len(value)) + value
    if len(value) >= size:
        return value[:size]
    pad = b"\xff" if entry.tag in COMPRESSED_NUMERIC_TAGS else b"\x00"
    return value + pad * (size - len(value))


def check_dol(data: bytes) -> tuple[DolEntry, ...]:
    """Parse a DOL and reject entries a terminal cannot honour (over 252 bytes in all).

    A command APDU carries at most 255 data bytes (ISO/IEC 7816-4 5.1), of which the
    template tag and length take up to three."""
    entries = parse_dol(data)
    if dol_length(entries) > 252:
        raise TlvError(f"DOL asks for {dol_length(entries)} bytes, more than an APDU holds")
    return entries
