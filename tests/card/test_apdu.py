"""ISO/IEC 7816-4 APDUs: the four command cases, status words, transport status handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.card.apdu import (
    CommandApdu,
    ResponseApdu,
    describe_sw,
    exchange,
    get_processing_options,
    read_record,
    select,
)
from terminal.errors import ApduError


def test_select_ppse_matches_the_recorded_command() -> None:
    # /work/shared/conformance/emv/VisaCardPpse.txt (devnied/EMV-NFC-Paycard-Enrollment)
    assert select(b"2PAY.SYS.DDF01").encode() == bytes.fromhex(
        "00A404000E325041592E5359532E444446303100"
    )


def test_read_record_puts_sfi_in_p2() -> None:
    assert read_record(2, 1).encode() == bytes.fromhex("00B2011400")
    assert read_record(1, 1).encode() == bytes.fromhex("00B2010C00")


def test_gpo_without_pdol_sends_empty_template_83() -> None:
    assert get_processing_options(b"").encode() == bytes.fromhex(
        "80A80000028300 00".replace(" ", "")
    )


@pytest.mark.parametrize(
    ("raw", "case", "le"),
    [
        ("80CA9F7F", 1, None),
        ("80CA9F7F00", 2, 256),
        ("00A40400 02 3F00".replace(" ", ""), 3, None),
        ("00A40400 02 3F00 10".replace(" ", ""), 4, 16),
    ],
)
def test_command_cases_round_trip(raw: str, case: int, le: int | None) -> None:
    command = CommandApdu.decode(bytes.fromhex(raw))
    assert command.case == case
    assert command.le == le
    assert command.encode() == bytes.fromhex(raw)


@pytest.mark.parametrize("raw", ["", "80CA9F", "00A4040005 3F00".replace(" ", ""), "00A404000000"])
def test_malformed_commands_raise_apdu_error(raw: str) -> None:
    with pytest.raises(ApduError):
        CommandApdu.decode(bytes.fromhex(raw))


def test_commands_refuse_out_of_range_fields() -> None:
    with pytest.raises(ApduError):
        CommandApdu(cla=0x100, ins=0, p1=0, p2=0)
    with pytest.raises(ApduError):
        CommandApdu(cla=0, ins=0, p1=0, p2=0, data=bytes(256))
    with pytest.raises(ApduError):
        CommandApdu(cla=0, ins=0, p1=0, p2=0, le=0)


def test_response_splits_data_and_status() -> None:
    response = ResponseApdu.decode(bytes.fromhex("9F17010390 00".replace(" ", "")))
    assert response.data == bytes.fromhex("9F170103")
    assert response.sw == 0x9000
    assert response.ok


@pytest.mark.parametrize("raw", ["", "90", "0000", "1290"])
def test_response_without_valid_status_raises_apdu_error(raw: str) -> None:
    with pytest.raises(ApduError):
        ResponseApdu.decode(bytes.fromhex(raw))


@pytest.mark.parametrize(
    ("sw", "words"),
    [
        (0x9000, "normal"),
        (0x6A82, "not found"),
        (0x6985, "conditions of use"),
        (0x6A81, "blocked"),
        (0x6700, "wrong length"),
        (0x6110, "16 more"),
        (0x6C20, "Le=20"),
        (0x63C2, "2 tries"),
    ],
)
def test_status_words_have_meanings(sw: int, words: str) -> None:
    assert words in describe_sw(sw)


def test_exchange_follows_61xx_with_get_response() -> None:
    answers = {
        bytes.fromhex("00B2010C00"): bytes.fromhex("70036104"),
        bytes.fromhex("00C0000004"): bytes.fromhex("5A01129000"),
    }
    sent: list[bytes] = []

    def transceive(apdu: bytes) -> bytes:
        sent.append(apdu)
        return answers[apdu]

    response = exchange(transceive, read_record(1, 1))
    assert response.data == bytes.fromhex("70035A0112")
    assert response.ok
    assert sent == [bytes.fromhex("00B2010C00"), bytes.fromhex("00C0000004")]


def test_exchange_resends_with_the_le_6cxx_names() -> None:
    def transceive(apdu: bytes) -> bytes:
        return (
            bytes.fromhex("6C05")
            if apdu[-1] == 0
            else bytes.fromhex("0102030405 9000".replace(" ", ""))
        )

    assert exchange(transceive, read_record(1, 1)).data == bytes.fromhex("0102030405")


def test_exchange_gives_up_on_an_endless_chain() -> None:
    with pytest.raises(ApduError):
        exchange(lambda apdu: bytes.fromhex("6101"), read_record(1, 1))


@given(st.binary(max_size=40))
def test_random_responses_raise_nothing_but_apdu_error(data: bytes) -> None:
    try:
        ResponseApdu.decode(data)
        CommandApdu.decode(data)
    except ApduError:
        pass
