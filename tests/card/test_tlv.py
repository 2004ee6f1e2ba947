"""BER-TLV strictness (EMV Book 3 Annex B) and DOL handling (Book 3 5.4)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.card.dol import DolEntry, fill_dol, parse_dol
from terminal.card.tlv import (
    MAX_DEPTH,
    Tlv,
    encode,
    encode_length,
    find,
    find_all,
    parse,
    parse_one,
)
from terminal.errors import TlvError

# The PPSE answer of the Visa trace in /work/shared/conformance/emv/VisaCardPpse.txt
# (devnied/EMV-NFC-Paycard-Enrollment, Apache-2.0): two applications in one directory.
VISA_PPSE = bytes.fromhex(
    "6F3B840E325041592E5359532E4444463031A529BF0C26"
    "61104F07A0000000421010500243428701016112"
    "4F07A0000000031010500456495341870102"
)


def test_ppse_answer_keeps_both_applications_in_order() -> None:
    fci = parse_one(VISA_PPSE)
    entries = find_all([fci], 0x61)
    assert [find(e.children, 0x4F).value.hex().upper() for e in entries] == [  # type: ignore[union-attr]
        "A0000000421010",
        "A0000000031010",
    ]
    assert [find(e.children, 0x87).value for e in entries] == [b"\x01", b"\x02"]  # type: ignore[union-attr]


def test_multi_byte_tags_parse() -> None:
    obj = parse_one(bytes.fromhex("9F2608FFFFFFFFFFFFFFFF"))
    assert obj.tag == 0x9F26
    assert obj.value == b"\xff" * 8
    three = parse_one(bytes.fromhex("DF810101AA"))
    assert three.tag == 0xDF8101
    assert three.value == b"\xaa"


def test_constructed_objects_hold_children() -> None:
    obj = parse_one(bytes.fromhex("7008 5A02 1234 5F2401 49".replace(" ", "")) + b"")
    assert obj.constructed
    assert [c.tag for c in obj.children] == [0x5A, 0x5F24]


def test_primitive_bit_is_b6_of_first_byte() -> None:
    assert parse_one(bytes.fromhex("5A021234")).constructed is False
    assert parse_one(bytes.fromhex("BF0C00")).constructed is True


@pytest.mark.parametrize(
    ("encoded", "length"),
    [("05", 5), ("7F", 127), ("8180", 128), ("81FF", 255), ("820100", 256), ("83010000", 65536)],
)
def test_definite_lengths_short_and_long_form(encoded: str, length: int) -> None:
    raw = bytes.fromhex("C1" + encoded) + bytes(length)
    assert len(parse_one(raw).value) == length


def test_long_form_with_small_length_is_accepted_as_ber_allows() -> None:
    assert parse_one(bytes.fromhex("5A8102ABCD")).value == b"\xab\xcd"


@pytest.mark.parametrize(
    "hex_input",
    [
        "5A80ABCD0000",  # indefinite length
        "5A8400000002ABCD",  # four length bytes: over-long
        "5A05ABCD",  # value shorter than declared
        "5A",  # no length
        "9F",  # tag continues past the end
        "9F8001",  # leading zero subsequent tag byte
        "DF81",  # tag continues past the end
        "5A81",  # length bytes missing
        "7003 5A05AB",  # child overruns its parent
    ],
)
def test_malformed_input_raises_tlv_error(hex_input: str) -> None:
    with pytest.raises(TlvError):
        parse(bytes.fromhex(hex_input.replace(" ", "")))


def test_padding_between_and_after_objects_is_skipped() -> None:
    raw = bytes.fromhex("00 5A021234 FFFF 00 5F240149 00".replace(" ", ""))
    assert [o.tag for o in parse(raw)] == [0x5A, 0x5F24]
    inner = bytes.fromhex("7009 00 5A021234 FF 0000 00".replace(" ", ""))
    assert [o.tag for o in parse_one(inner).children] == [0x5A]


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    raw = b"\xa0\x00"
    for _ in range(MAX_DEPTH + 5):
        raw = b"\xa0" + encode_length(len(raw)) + raw
    with pytest.raises(TlvError):
        parse(raw)


def test_parse_one_refuses_several_objects() -> None:
    with pytest.raises(TlvError):
        parse_one(bytes.fromhex("5A0112 5A0134".replace(" ", "")))


def test_constructing_with_the_wrong_kind_of_tag_is_refused() -> None:
    with pytest.raises(TlvError):
        Tlv.primitive(0x70, b"")
    with pytest.raises(TlvError):
        Tlv.of_children(0x5A, ())
    with pytest.raises(TlvError):
        Tlv.primitive(0x9F80, b"")  # leading zero subsequent byte


def test_encode_uses_the_shortest_length_form() -> None:
    assert Tlv.primitive(0x5A, bytes(3)).encode() == bytes.fromhex("5A03000000")
    assert Tlv.primitive(0x5A, bytes(200)).encode()[:3] == bytes.fromhex("5A81C8")
    assert Tlv.primitive(0x5A, bytes(300)).encode()[:4] == bytes.fromhex("5A82012C")


def test_encode_refuses_lengths_beyond_three_bytes() -> None:
    with pytest.raises(TlvError):
        encode_length(1 << 24)


# --- DOL (Book 3 5.4) ---------------------------------------------------------------------

VISA_PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def test_parse_dol_lists_tags_and_lengths() -> None:
    entries = parse_dol(VISA_PDOL)
    assert entries[0] == DolEntry(tag=0x9F66, length=4)
    assert [e.tag for e in entries] == [
        0x9F66,
        0x9F02,
        0x9F03,
        0x9F1A,
        0x95,
        0x5F2A,
        0x9A,
        0x9C,
        0x9F37,
    ]
    assert sum(e.length for e in entries) == 33


def test_fill_dol_pads_and_truncates_by_format() -> None:
    entries = (
        DolEntry(tag=0x9F02, length=6),  # n: leading zeros
        DolEntry(tag=0x9F1A, length=1),  # n: leftmost bytes dropped
        DolEntry(tag=0x5A, length=4),  # cn: trailing FF
        DolEntry(tag=0x9F4E, length=4),  # ans: trailing 00 / rightmost dropped
        DolEntry(tag=0x9F4E, length=1),
        DolEntry(tag=0xDF01, length=2),  # unknown to the terminal: zeros
    )
    values = {0x9F02: b"\x10\x00", 0x9F1A: b"\x02\x76", 0x5A: b"\x12", 0x9F4E: b"EV"}
    assert fill_dol(entries, values) == bytes.fromhex("000000001000 76 12FFFFFF 45560000 45 0000")


def test_truncated_dol_raises_tlv_error() -> None:
    with pytest.raises(TlvError):
        parse_dol(bytes.fromhex("9F6604 9F"))


# --- properties -----------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_tlv_error(data: bytes) -> None:
    with contextlib.suppress(TlvError):
        parse(data)


@given(st.binary(max_size=64))
def test_random_dols_raise_nothing_but_tlv_error(data: bytes) -> None:
    with contextlib.suppress(TlvError):
        parse_dol(data)


def _tags(constructed: bool) -> st.SearchStrategy[int]:
    flag = 0x20 if constructed else 0x00
    single = st.sampled_from([c for c in range(0x01, 0x1F) if c & 0x1F != 0x1F]).map(
        lambda low: 0x40 | flag | low
    )
    double = st.integers(0x01, 0x7F).map(lambda low: ((0x9F | flag) << 8) | low)
    first = 0xBF if constructed else 0xDF
    triple = st.tuples(st.integers(0x81, 0xFF), st.integers(0x00, 0x7F)).map(
        lambda bs: (first << 16) | (bs[0] << 8) | bs[1]
    )
    return st.one_of(single, double, triple)


_primitives = st.builds(Tlv.primitive, _tags(False), st.binary(max_size=140))
_trees = st.recursive(
    _primitives,
    lambda kids: st.builds(Tlv.of_children, _tags(True), st.lists(kids, max_size=4)),
    max_leaves=12,
)


@given(st.lists(_trees, max_size=5))
def test_encode_then_parse_gives_the_same_tree(objects: list[Tlv]) -> None:
    encoded = encode(objects)
    assert parse(encoded) == tuple(objects)
    assert encode(parse(encoded)) == encoded
