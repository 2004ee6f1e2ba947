"""The PN532 emulator keeps the chip's time and speaks the ATS forms cards use.

ACK delay against nfcpy's 100 ms window, RF timeouts (passive activation retries, the
InCommunicateThru retry timeout, a wait only a cancel ends), the baud-rate switch nfcpy makes
(and a host that does not follow it), and ISO/IEC 14443-4 ATS forms with and without TA, TB
and TC, read through nfcpy (which needed the driver's help: `drivers/ats.py`). Times are
checked only from below: the emulator never answers sooner than the chip would (how much later
depends on the machine, and is not asserted)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from drivers.ats import complete_ats
from drivers.backoff import Backoff
from drivers.nfc_reader import NfcReader
from hardware.emulators.picc import parse_ats
from hardware.emulators.pn532 import EARLY_S, PASSIVE_ATTEMPT_S, Pn532Emulator
from hardware.emulators.pn532_frames import ACK, response_frame
from hardware.ports import ReaderFault
from hardware.sim.card_script import load_named

pytestmark = pytest.mark.timeout(60)

POLL_S = 5.0
FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.2)
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
GET_FIRMWARE_VERSION = bytes.fromhex("0000ff02fed4022a00")
QUIET_S = 0.3  # long enough to say "no answer" (the chip would have answered in ~1 ms)


def host_frame(code: int, data: bytes = b"") -> bytes:
    """A normal information frame from the host (UM0701-02 6.2.1.1)."""
    body = bytes([0xD4, code]) + data
    return (
        b"\x00\x00\xff"
        + bytes([len(body), -len(body) & 0xFF])
        + body
        + bytes([-sum(body) & 0xFF, 0])
    )


class EchoCard:
    """Answers every APDU with `size` bytes derived from it, then 9000."""

    def __init__(self, size: int) -> None:
        self.uid = bytes.fromhex("08123456")
        self.iso_dep = True
        self.size = size

    def transceive(self, apdu: bytes) -> bytes:
        return expected_echo(apdu, self.size)


def expected_echo(apdu: bytes, size: int) -> bytes:
    return bytes((apdu[i % len(apdu)] + i) % 256 for i in range(size)) + b"\x90\x00"


@pytest.fixture
def line() -> Iterator[tuple[Pn532Emulator, serial.Serial]]:
    with Pn532Emulator() as emulator:
        port = serial.Serial(emulator.port, 115200, timeout=QUIET_S)
        yield emulator, port
        port.close()


def test_the_ack_comes_after_the_chips_delay() -> None:
    with (
        Pn532Emulator(ack_delay_s=0.02) as emulator,
        serial.Serial(emulator.port, 115200, timeout=1.0) as raw,
    ):
        sent = time.monotonic()
        raw.write(GET_FIRMWARE_VERSION)
        assert raw.read(len(ACK)) == ACK
        # The emulator puts bytes due within EARLY_S on the line at once (see its _flush_due).
        assert time.monotonic() - sent >= 0.02 - EARLY_S


def test_an_ack_later_than_nfcpys_window_is_a_reader_that_does_not_open() -> None:
    with Pn532Emulator(ack_delay_s=0.15) as emulator:
        reader = NfcReader(emulator.port, backoff=FAST_BACKOFF)
        try:
            with pytest.raises(ReaderFault):
                reader.poll(0)
        finally:
            reader.close()


def test_no_card_is_answered_after_the_passive_activation_retries(
    line: tuple[Pn532Emulator, serial.Serial],
) -> None:
    _, raw = line
    raw.write(host_frame(0x32, bytes([0x05, 0xFF, 0x01, 0x03])))  # MxRtyPassiveActivation 3
    assert raw.read(len(ACK) + len(response_frame(0x32, b""))).startswith(ACK)
    sent = time.monotonic()
    raw.write(host_frame(0x4A, bytes([0x01, 0x00])))  # InListPassiveTarget, 1 target, 106A
    assert raw.read(len(ACK)) == ACK
    assert raw.read(len(response_frame(0x4A, b"\x00"))) == response_frame(0x4A, b"\x00")
    assert time.monotonic() - sent >= 4 * PASSIVE_ATTEMPT_S


def test_with_the_power_on_retries_only_a_cancel_ends_the_wait_for_a_card(
    line: tuple[Pn532Emulator, serial.Serial],
) -> None:
    _, raw = line
    raw.write(host_frame(0x4A, bytes([0x01, 0x00])))  # MxRtyPassiveActivation FFh: for ever
    assert raw.read(len(ACK)) == ACK
    assert raw.read(1) == b""  # still looking for a card
    raw.write(ACK)  # cancel
    raw.write(GET_FIRMWARE_VERSION)
    answer = response_frame(0x02, bytes.fromhex("32010607"))
    assert raw.read(len(ACK) + len(answer)) == ACK + answer  # and never the cancelled answer
    assert raw.read(1) == b""


def test_a_frame_no_card_answers_fails_after_the_retry_timeout(
    line: tuple[Pn532Emulator, serial.Serial],
) -> None:
    _, raw = line
    raw.write(host_frame(0x32, bytes([0x02, 0x00, 0x0B, 0x0A])))  # fRetryTimeout 51.2 ms
    assert raw.read(len(ACK) + len(response_frame(0x32, b""))).startswith(ACK)
    sent = time.monotonic()
    raw.write(host_frame(0x42, bytes([0x26])))  # InCommunicateThru, nobody in the field
    assert raw.read(len(ACK)) == ACK
    assert raw.read(len(response_frame(0x42, b"\x01"))) == response_frame(0x42, b"\x01")
    assert time.monotonic() - sent >= 0.0512


def test_nfcpy_switches_the_chip_to_921600_baud_and_they_keep_talking() -> None:
    with Pn532Emulator(strict_baud=True) as emulator:
        assert emulator.baud == 115200
        reader = NfcReader(emulator.port, backoff=FAST_BACKOFF)
        try:
            card = load_named("visa").card()
            emulator.present(card)
            target = reader.poll(POLL_S)
            assert target is not None
            assert emulator.baud == 921600
            assert target.transceive(SELECT_PPSE) == card.profile.script[0].response
        finally:
            reader.close()
        assert emulator.card_errors == []


def test_a_host_that_stays_at_the_old_speed_after_the_switch_loses_the_chip() -> None:
    with (
        Pn532Emulator(strict_baud=True) as emulator,
        serial.Serial(emulator.port, 115200, timeout=QUIET_S) as raw,
    ):
        raw.write(host_frame(0x10, bytes([0x07])))  # SetSerialBaudRate 921600
        answer = response_frame(0x10, b"")
        assert raw.read(len(ACK) + len(answer)) == ACK + answer
        raw.write(ACK)  # the host takes the answer: the chip switches
        raw.write(GET_FIRMWARE_VERSION)  # still at 115200
        assert raw.read(len(ACK)) == b""
        assert emulator.baud == 921600
        raw.baudrate = 921600
        raw.write(GET_FIRMWARE_VERSION)
        firmware = response_frame(0x02, bytes.fromhex("32010607"))
        assert raw.read(len(ACK) + len(firmware)) == ACK + firmware


ATS_FORMS = {
    "TA TB TC": "0578807002",
    "T0 only, FSCI 8": "0208",
    "TL only (all defaults, 32-byte frames)": "01",
    "TB only, FWI 8": "032880",
    "TC only, no CID": "034800",
    "TA TB TC and historical bytes, FSCI 5": "07757780028031",
    "T0 only, FSCI 0 (16-byte frames)": "0200",
}


@pytest.mark.parametrize("ats", list(ATS_FORMS.values()), ids=list(ATS_FORMS))
def test_cards_with_each_ats_form_are_read_through_nfcpy(ats: str) -> None:
    params = parse_ats(bytes.fromhex(ats))
    long_apdu = bytes.fromhex("80A8000023") + bytes(range(35)) + b"\x00"  # 41 bytes
    with Pn532Emulator() as emulator:
        reader = NfcReader(emulator.port, backoff=FAST_BACKOFF)
        try:
            emulator.present(EchoCard(size=120), ats=bytes.fromhex(ats))
            target = reader.poll(POLL_S)
            assert target is not None
            assert target.transceive(SELECT_PPSE) == expected_echo(SELECT_PPSE, 120)
            # Longer than a 16- or 32-byte frame: nfcpy must chain to the card's FSC.
            assert target.transceive(long_apdu) == expected_echo(long_apdu, 120)
        finally:
            reader.close()
        assert emulator.card_errors == []
    assert params.fsc in (16, 32, 64, 256)


def test_an_ats_whose_t0_promises_missing_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="interface bytes"):
        parse_ats(bytes.fromhex("027F"))


@pytest.mark.parametrize(
    ("ats", "completed"),
    [
        ("0578807002", "0578807002"),  # already complete
        ("0208", "0578004002"),  # TA 00, TB 40 (FWI 4), TC 02 filled in
        ("01", "0572004002"),  # no T0: FSCI 2
        ("032880", "0578008002"),  # TB kept where nfcpy reads it
        ("07757780028031", "07757780028031"),  # historical bytes kept
        ("027F", "027F"),  # T0 promises bytes that are not there: left for nfcpy to refuse
    ],
)
def test_the_driver_completes_the_ats_for_nfcpy(ats: str, completed: str) -> None:
    assert complete_ats(bytes.fromhex(ats)) == bytes.fromhex(completed)
