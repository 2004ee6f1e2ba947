"""Strict BER-TLV as EMV uses it (EMV 4.4 Book 3, Annex B; ISO/IEC 8825-1).

A data object is a tag, a length and a value. Rules enforced here:

- Tag (Book 3 B1): the first byte's b6 says constructed; if its b5-b1 are all 1 (``xx011111``)
  more tag bytes follow, each with b8 set while yet another follows. The first subsequent
  byte may not have b7-b1 all zero (ISO/IEC 8825-1 8.1.2.4.2 c). Tags are held as ``int``
  (``0x9F26``); a tag never starts with ``00`` so the integer is unambiguous.
- Length (Book 3 B2): short form ``00``-``7F``, or long form ``81``/``82``/``83`` followed by
  one to three length bytes. The indefinite form ``80`` and longer forms are rejected.
- Padding (Book 3 B, "Coding of BER-TLV data objects"): ``00`` bytes, and the ``FF`` bytes
  ISO/IEC 7816-4 5.2.2 allows, may occur before, between and after data objects; they are
  skipped at every level.
- Repeated tags are kept, in order (a PPSE answer holds one ``61`` entry per application).

Malformed input raises `TlvError` and nothing else; parsing is iterative over the input with
a bounded nesting depth, so no input can make it hang or exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from terminal.errors import TlvError

# EMV data objects nest a few levels (6F > A5 > BF0C > 61 > 4F); 16 is ample and keeps
# recursion far from Python's limit whatever the input.
MAX_DEPTH = 16
# Book 3 B2: the long form carries at most three length bytes (lengths up to 16 MiB).
MAX_LENGTH_BYTES = 3
_PADDING = (0x00, 0xFF)
_CONSTRUCTED = 0x20
_MORE_TAG_BYTES = 0x1F
_CONTINUES = 0x80


@dataclass(frozen=True, slots=True, kw_only=True)
class Tlv:
    """One BER-TLV data object.

    For a constructed object `children` holds its parsed content, in order, and `value` its
    encoding; build one with `Tlv.of_children` so the two agree. A primitive object has no
    children.
    """

    tag: int
    value: bytes
    children: tuple[Tlv, ...] = ()

    @staticmethod
    def primitive(tag: int, value: bytes) -> Tlv:
        """A primitive object; the tag must be a well-formed primitive tag."""
        if is_constructed(tag):
            raise TlvError(f"tag {tag:X} is constructed")
        _check_tag(tag)
        return Tlv(tag=tag, value=bytes(value))

    @staticmethod
    def of_children(tag: int, children: Iterable[Tlv]) -> Tlv:
        """A constructed object holding `children`."""
        if not is_constructed(tag):
            raise TlvError(f"tag {tag:X} is primitive")
        _check_tag(tag)
        kids = tuple(children)
        return Tlv(tag=tag, value=encode(kids), children=kids)

    @property
    def constructed(self) -> bool:
        """Book 3 B1: b6 of the first tag byte."""
        return is_constructed(self.tag)

    def find(self, tag: int) -> Tlv | None:
        """The first object with `tag` at any depth below this one, or None."""
        return find(self.children, tag)

    def encode(self) -> bytes:
        """The object's BER-TLV encoding (minimal length form)."""
        return encode_tag(self.tag) + encode_length(len(self.value)) + self.value


def is_constructed(tag: int) -> bool:
    """Book 3 B1: b6 of the first tag byte says the value is itself BER-TLV."""
    first = tag >> (8 * (tag_length(tag) - 1))
    return bool(first & _CONSTRUCTED)


def tag_length(tag: int) -> int:
    """How many bytes `tag` occupies."""
    return max(1, (tag.bit_length() + 7) // 8)


def encode_tag(tag: int) -> bytes:
    """The tag bytes of `tag` (an int such as 0x9F26)."""
    if tag <= 0:
        raise TlvError(f"tag {tag:X} is not a tag")
    return tag.to_bytes(tag_length(tag), "big")


def encode_length(length: int) -> bytes:
    """Book 3 B2 length field, shortest form."""
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise TlvError(f"length {length} needs more than {MAX_LENGTH_BYTES} length bytes")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def encode(objects: Iterable[Tlv]) -> bytes:
    """The concatenated encodings of `objects`."""
    return b"".join(obj.encode() for obj in objects)


def parse(data: bytes) -> tuple[Tlv, ...]:
    """Parse a sequence of data objects (with padding) into a tree.

    Raises `TlvError` for any malformation: truncated tag, length or value, indefinite or
    over-long length, bad tag encoding, nesting deeper than `MAX_DEPTH`.
    """
    return _parse_level(bytes(data), 0, len(data), 0)


def parse_one(data: bytes) -> Tlv:
    """Parse input that must hold exactly one data object (padding aside)."""
    objects = parse(data)
    if len(objects) != 1:
        raise TlvError(f"expected one data object, found {len(objects)}")
    return objects[0]


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with `tag`, depth first in document order, or None."""
    for obj in walk(objects):
        if obj.tag == tag:
            return obj
    return None


def find_all(objects: Iterable[Tlv], tag: int) -> tuple[Tlv, ...]:
    """Every object with `tag`, depth first in document order."""
    return tuple(obj for obj in walk(objects) if obj.tag == tag)


def walk(objects: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object and descendant, depth first in document order."""
    stack = list(objects)[::-1]
    while stack:
        obj = stack.pop()
        yield obj
        stack.extend(reversed(obj.children))


def read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a tag at `pos`; return (tag, position after it)."""
    if pos >= end:
        raise TlvError(f"offset {pos}: tag expected, input ends")
    first = data[pos]
    tag = first
    pos += 1
    if first & _MORE_TAG_BYTES == _MORE_TAG_BYTES:
        if pos >= end:
            raise TlvError(f"offset {pos}: tag continues past the end")
        if data[pos] & 0x7F == 0:
            # ISO/IEC 8825-1 8.1.2.4.2 (c): no leading zero bits in the tag number
            raise TlvError(f"offset {pos}: tag has a leading zero subsequent byte")
        while True:
            if pos >= end:
                raise TlvError(f"offset {pos}: tag continues past the end")
            byte = data[pos]
            tag = (tag << 8) | byte
            pos += 1
            if not byte & _CONTINUES:
                break
    return tag, pos


def read_length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a length field at `pos`; return (length, position after it)."""
    if pos >= end:
        raise TlvError(f"offset {pos}: length expected, input ends")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    size = first & 0x7F
    if size == 0:
        raise TlvError(f"offset {pos - 1}: indefinite length (80) is not allowed in EMV")
    if size > MAX_LENGTH_BYTES:
        raise TlvError(f"offset {pos - 1}: length field {first:02X} is over-long")
    if pos + size > end:
        raise TlvError(f"offset {pos}: length field runs past the end")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


def _check_tag(tag: int) -> None:
    raw = encode_tag(tag)
    parsed, after = read_tag(raw, 0, len(raw))
    if parsed != tag or after != len(raw):
        raise TlvError(f"{tag:X} is not a well-formed BER tag")
    if raw[0] in _PADDING:
        raise TlvError(f"{tag:X} starts with a padding byte")


def _parse_level(data: bytes, pos: int, end: int, depth: int) -> tuple[Tlv, ...]:
    if depth > MAX_DEPTH:
        raise TlvError(f"offset {pos}: nested deeper than {MAX_DEPTH}")
    out: list[Tlv] = []
    while pos < end:
        if data[pos] in _PADDING:
            pos += 1
            continue
        start = pos
        tag, pos = read_tag(data, pos, end)
        length, pos = read_length(data, pos, end)
        if pos + length > end:
            raise TlvError(
                f"offset {start}: tag {tag:X} declares {length} bytes, {end - pos} remain"
            )
        value = data[pos : pos + length]
        children: tuple[Tlv, ...] = ()
        if is_constructed(tag):
            children = _parse_level(data, pos, pos + length, depth + 1)
        out.append(Tlv(tag=tag, value=value, children=children))
        pos += length
    return tuple(out)
