"""The nfcpy PN532 reader driver on the PN532 emulator: what the port contract does not cover.

Opening paths, hot-unplug and re-open with back-off, a silent reader becoming `ReaderFault`
within a bounded time, ISO-DEP chaining and waiting-time extensions, Type B and UID-only cards,
and no card data in any log even with nfcpy's loggers turned up to their frame dumps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nfc
import nfc.clf
import nfc.clf.pn53x
import nfc.clf.pn532
import nfc.clf.transport
import nfc.tag
import pytest
import serial

from drivers.backoff import Backoff
from drivers.nfc_reader import NfcReader, resolve_port
from hardware.emulators.picc import Technology
from hardware.emulators.pn532 import Cmd, Pn532Emulator
from hardware.emulators.pn532_frames import ACK, NACK, response_frame
from hardware.ports import CardGone, CardTarget, ReaderFault
from hardware.sim.card_script import load_named, parse_profile
from tests.contract.test_card_reader_contract import poll_until_back

pytestmark = pytest.mark.timeout(60)

POLL_S = 2.0
BOUND_S = 1.0  # a failure must surface within this
FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.2)
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
SELECT_VISA = bytes.fromhex("00A4040007A000000003101000")
GET_PROCESSING_OPTIONS = bytes.fromhex("80A80000238321") + bytes(33) + b"\x00"
READ_RECORD_1 = bytes.fromhex("00B2010C00")
READ_RECORD_2 = bytes.fromhex("00B2011400")
VISA_PAN = "4761739001010010"  # the test PAN in hardware/sim/cards/visa.card
GET_FIRMWARE_VERSION_FRAME = bytes.fromhex("0000ff02fed4022a00")


class EchoCard:
    """A test card: answers every APDU with `size` bytes derived from it, then 9000."""

    def __init__(self, uid: bytes = bytes.fromhex("08123456"), *, size: int = 0) -> None:
        self.uid = uid
        self.iso_dep = True
        self.size = size
        self.commands: list[bytes] = []

    def transceive(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        body = bytes((apdu[i % len(apdu)] + i) % 256 for i in range(self.size)) if apdu else b""
        return body + b"\x90\x00"


class ThinkingCard:
    """A test card that computes until the test says it is done."""

    def __init__(self) -> None:
        self.uid = bytes.fromhex("08ABCDEF")
        self.iso_dep = True
        self.thinking = threading.Event()
        self.done = threading.Event()

    def transceive(self, apdu: bytes) -> bytes:
        self.thinking.set()
        self.done.wait(10.0)
        return b"\x90\x00"


class UidCard:
    def __init__(self, uid: bytes) -> None:
        self.uid = uid
        self.iso_dep = False

    def transceive(self, apdu: bytes) -> bytes:
        raise AssertionError("a UID-only card is never sent an APDU")


def wait_until(condition: Callable[[], bool], timeout: float = BOUND_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


@pytest.fixture
def emulator() -> Iterator[Pn532Emulator]:
    with Pn532Emulator() as emulator:
        yield emulator
        assert emulator.card_errors == []


@pytest.fixture
def reader(emulator: Pn532Emulator) -> Iterator[NfcReader]:
    reader = NfcReader(emulator.port, backoff=FAST_BACKOFF)
    yield reader
    reader.close()


def tap(
    reader: NfcReader,
    emulator: Pn532Emulator,
    card: CardTarget,
    *,
    technology: Technology = Technology.A,
    sel_res: int | None = None,
) -> CardTarget:
    emulator.present(card, technology=technology, sel_res=sel_res)
    target = reader.poll(POLL_S)
    assert target is not None
    return target


# -- opening ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "port"),
    [
        ("tty:AMA0:pn532", "/dev/ttyAMA0"),
        ("tty:USB0:pn532", "/dev/ttyUSB0"),
        ("tty:S0", "/dev/ttyS0"),
        ("tty:serial0:pn532", "/dev/serial0"),
        ("/dev/pts/5", "/dev/pts/5"),
        ("/dev/serial/by-id/usb-PN532_01", "/dev/serial/by-id/usb-PN532_01"),
    ],
)
def test_paths_resolve_to_the_device_nfcpy_would_open(path: str, port: str) -> None:
    assert resolve_port(path) == port


@pytest.mark.parametrize(
    "path",
    ["tty:AMA0:arygon", "usb:054c:06c3", "tty::pn532", "/dev/tty;reboot", "tty:a b:pn532", "x"],
)
def test_other_drivers_and_paths_a_shell_could_misread_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="reader path"):
        NfcReader(path)


def test_missing_reader_is_a_fault_from_poll_not_from_construction(tmp_path: Path) -> None:
    reader = NfcReader(f"{tmp_path}/no-such-tty", backoff=FAST_BACKOFF)
    with pytest.raises(ReaderFault):
        reader.poll(0)
    reader.close()


# -- hot-unplug, back-off, silence --------------------------------------------------------------


def test_backoff_grows_by_its_factor_up_to_its_maximum() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, maximum_s=3.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_unplugged_reader_is_reopened_when_it_comes_back(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    held = tap(reader, emulator, EchoCard())
    emulator.unplug()
    with pytest.raises(ReaderFault):
        held.transceive(SELECT_PPSE)
    with pytest.raises(ReaderFault):
        reader.poll(0.2)
    emulator.replug()
    again = reader.poll(POLL_S)  # the card never left, but its session died with the reader
    assert again is not None
    assert again.transceive(SELECT_PPSE)[-2:] == b"\x90\x00"
    with pytest.raises(ReaderFault):  # the old session stays dead
        held.transceive(SELECT_PPSE)


def test_card_held_when_the_reader_failed_is_kept_and_the_next_one_is_returned(
    reader: NfcReader, emulator: Pn532Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader fails in the presence check of a card whose tap is over: after the re-open
    the card in the field is held, not returned (the caller would take it for a new tap)."""
    caplog.set_level(logging.INFO, logger="drivers.nfc_reader")
    tap(reader, emulator, EchoCard())
    emulator.unplug()
    with pytest.raises(ReaderFault):
        reader.poll(0.2)
    emulator.replug()
    assert poll_until_back(reader, POLL_S) is None
    assert "event=card_still_in_field" in caplog.text
    assert reader.poll(0.3) is None
    emulator.remove()
    assert reader.poll(0.3) is None
    assert tap(reader, emulator, EchoCard()).iso_dep  # once it left, the next card is a tap


def test_card_that_left_while_the_reader_was_down_lets_the_next_card_through(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    tap(reader, emulator, EchoCard())
    emulator.unplug()
    with pytest.raises(ReaderFault):
        reader.poll(0.2)
    emulator.remove()
    emulator.replug()
    assert poll_until_back(reader, POLL_S) is None  # an empty field: the held card has gone
    assert tap(reader, emulator, EchoCard()).iso_dep


def test_no_reopen_is_tried_before_the_backoff_has_passed(emulator: Pn532Emulator) -> None:
    reader = NfcReader(emulator.port, backoff=Backoff(initial_s=30.0))
    reader.poll(0)
    emulator.go_silent()
    with pytest.raises(ReaderFault):
        reader.poll(0.5)
    attempts = emulator.commands[Cmd.GET_FIRMWARE_VERSION]
    started = time.monotonic()
    with pytest.raises(ReaderFault):
        reader.poll(0.2)  # waits out its timeout for the next attempt, then reports the fault
    assert 0.15 <= time.monotonic() - started < 0.2 + BOUND_S
    with pytest.raises(ReaderFault):
        reader.poll(0)
    assert emulator.commands[Cmd.GET_FIRMWARE_VERSION] == attempts
    reader.close()


def test_reopen_attempts_back_off_while_the_reader_stays_silent(emulator: Pn532Emulator) -> None:
    reader = NfcReader(emulator.port, backoff=Backoff(initial_s=0.1, factor=2.0, maximum_s=10.0))
    reader.poll(0)
    emulator.go_silent()
    before = emulator.commands[Cmd.GET_FIRMWARE_VERSION]
    deadline = time.monotonic() + 1.5
    faults = 0
    while time.monotonic() < deadline:
        with pytest.raises(ReaderFault):
            reader.poll(0.1)
        faults += 1
    attempts = emulator.commands[Cmd.GET_FIRMWARE_VERSION] - before
    # Attempts after 0.1, 0.2 and 0.4 s of back-off (each failing after the 100 ms ACK wait);
    # a fixed 0.1 s retry would have made about seven.
    assert 2 <= attempts <= 4
    assert faults >= 5  # every poll reported the fault
    emulator.resume()
    reader.close()


def test_silent_reader_fails_an_exchange_within_a_bounded_time(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    held = tap(reader, emulator, EchoCard())
    emulator.go_silent()
    started = time.monotonic()
    with pytest.raises(ReaderFault) as raised:
        held.transceive(SELECT_PPSE)
    assert not isinstance(raised.value, CardGone)
    assert time.monotonic() - started < BOUND_S


def test_reader_falling_silent_under_a_blocked_poll_fails_it_within_a_bounded_time(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    reader.poll(0)
    outcome: list[BaseException | CardTarget | None] = []

    def poll() -> None:
        try:
            outcome.append(reader.poll(30.0))
        except ReaderFault as fault:
            outcome.append(fault)

    thread = threading.Thread(target=poll)
    thread.start()
    silenced_at = time.monotonic()
    emulator.go_silent()
    thread.join(BOUND_S)
    assert not thread.is_alive()
    assert time.monotonic() - silenced_at < BOUND_S
    assert len(outcome) == 1
    assert isinstance(outcome[0], ReaderFault)


def test_transceive_after_close_is_a_reader_fault(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    held = tap(reader, emulator, EchoCard())
    reader.close()
    with pytest.raises(ReaderFault):
        held.transceive(SELECT_PPSE)
    assert reader.poll(0.5) is None


# -- cards --------------------------------------------------------------------------------------


def test_long_command_and_answer_are_chained_both_ways(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    card = EchoCard(size=700)
    target = tap(reader, emulator, card)
    command = bytes(range(256)) + bytes(range(44))  # 300 bytes: more than one I-block
    answer = target.transceive(command)
    assert card.commands == [command]
    assert answer == EchoCard(size=700).transceive(command)


def test_slow_card_is_given_waiting_time_extensions(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    card = ThinkingCard()
    target = tap(reader, emulator, card)
    thru = emulator.commands[Cmd.IN_COMMUNICATE_THRU]
    answers: list[bytes] = []
    exchange = threading.Thread(target=lambda: answers.append(target.transceive(SELECT_PPSE)))
    exchange.start()
    # The card keeps thinking over several frame waiting times: each S(WTX) is answered.
    assert wait_until(lambda: emulator.commands[Cmd.IN_COMMUNICATE_THRU] >= thru + 4)
    card.done.set()
    exchange.join(BOUND_S)
    assert answers == [b"\x90\x00"]


def test_poll_keeps_its_timeout_while_an_exchange_holds_the_reader(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    card = ThinkingCard()
    target = tap(reader, emulator, card)
    exchange = threading.Thread(target=lambda: target.transceive(SELECT_PPSE))
    exchange.start()
    assert card.thinking.wait(BOUND_S)
    started = time.monotonic()
    assert reader.poll(0.2) is None
    assert time.monotonic() - started < 0.2 + BOUND_S
    card.done.set()
    exchange.join(BOUND_S)
    assert not exchange.is_alive()


def test_card_taken_away_while_it_computes_is_card_gone(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    card = ThinkingCard()
    target = tap(reader, emulator, card)
    raised: list[BaseException] = []

    def exchange() -> None:
        try:
            target.transceive(SELECT_PPSE)
        except CardGone as gone:
            raised.append(gone)

    thread = threading.Thread(target=exchange)
    thread.start()
    assert card.thinking.wait(BOUND_S)
    emulator.remove()
    card.done.set()
    thread.join(BOUND_S)
    assert not thread.is_alive()
    assert len(raised) == 1


def test_card_that_stops_answering_is_card_gone(reader: NfcReader, emulator: Pn532Emulator) -> None:
    profile = parse_profile(
        "name: mute\nkind: iso-dep\nuid: 08010203\n"
        "send: 00 A4 04 00 *\nresp: 90 00\nsend: 00 B2 *\nresp: mute\n"
    )
    target = tap(reader, emulator, profile.card())
    assert target.transceive(SELECT_PPSE) == b"\x90\x00"
    with pytest.raises(CardGone):  # on the air a mute card and a card gone look the same
        target.transceive(READ_RECORD_1)


def test_type_b_card_is_iso_dep_with_its_pupi_as_uid(
    reader: NfcReader, emulator: Pn532Emulator
) -> None:
    card = EchoCard(uid=bytes.fromhex("1A2B3C4D"), size=3)
    target = tap(reader, emulator, card, technology=Technology.B)
    assert target.iso_dep
    assert target.uid == bytes.fromhex("1A2B3C4D")
    assert target.transceive(SELECT_PPSE) == EchoCard(size=3).transceive(SELECT_PPSE)
    assert reader.poll(0.3) is None  # held: the presence check keeps it from coming back


@pytest.mark.parametrize(
    ("uid", "sel_res"),
    [
        ("04A224B2C35E80", 0x00),  # NTAG / Ultralight: Type 2, 7-byte UID
        ("D3A1B2C4", 0x08),  # MIFARE Classic 1K: 4-byte UID
        ("04A1B2C3D4E5F60102A3", 0x08),  # triple-size UID
    ],
)
def test_uid_only_card_is_returned_once_and_carries_no_apdus(
    reader: NfcReader, emulator: Pn532Emulator, uid: str, sel_res: int
) -> None:
    target = tap(reader, emulator, UidCard(bytes.fromhex(uid)), sel_res=sel_res)
    assert target.uid == bytes.fromhex(uid)
    assert not target.iso_dep
    with pytest.raises(CardGone):
        target.transceive(SELECT_PPSE)
    assert reader.poll(0.3) is None
    emulator.remove()
    assert reader.poll(0.2) is None
    again = tap(reader, emulator, UidCard(bytes.fromhex(uid)), sel_res=sel_res)
    assert again.uid == bytes.fromhex(uid)


# -- logging ------------------------------------------------------------------------------------


def read_visa(target: CardTarget) -> bytes:
    answers = [
        target.transceive(apdu)
        for apdu in (SELECT_PPSE, SELECT_VISA, GET_PROCESSING_OPTIONS, READ_RECORD_1, READ_RECORD_2)
    ]
    return b"".join(answers)


def card_data_in(text: str) -> list[str]:
    uid = load_named("visa").uid.hex()
    forms = [VISA_PAN, " ".join(VISA_PAN[i : i + 2] for i in range(0, 16, 2)), uid]
    lowered = text.lower().replace(":", "")
    return [form for form in forms if form.lower() in lowered]


def test_nfcpy_left_at_debug_would_log_card_data(
    emulator: Pn532Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the next test: with nothing holding nfcpy back, the PAN is logged."""
    caplog.set_level(1)
    caplog.set_level(1, logger="nfc")
    transport = nfc.clf.transport.TTY(emulator.port)
    clf = nfc.ContactlessFrontend()
    clf.device = nfc.clf.pn532.init(transport)
    clf.device._path = emulator.port
    emulator.present(load_named("visa").card())
    target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
    tag = nfc.tag.activate(clf, target)
    assert VISA_PAN in bytes(read_visa(_TagTarget(tag))).hex()
    clf.close()
    assert VISA_PAN in card_data_in(caplog.text)


class _TagTarget:
    def __init__(self, tag: object) -> None:
        self.tag = tag
        self.uid = b""
        self.iso_dep = True

    def transceive(self, apdu: bytes) -> bytes:
        return bytes(self.tag.transceive(bytearray(apdu)))  # type: ignore[attr-defined]


def test_no_card_data_in_logs_even_with_nfcpy_turned_up_to_debug(
    emulator: Pn532Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    for name in ("nfc", "nfc.clf", "nfc.clf.transport", "nfc.clf.pn532", "nfc.tag.tt4"):
        caplog.set_level(1, logger=name)
    reader = NfcReader(emulator.port, backoff=FAST_BACKOFF)
    target = tap(reader, emulator, load_named("visa").card())
    assert VISA_PAN in read_visa(target).hex()  # the PAN did cross the reader
    emulator.remove()
    assert reader.poll(0.3) is None
    reader.close()
    assert "event=card_arrived" in caplog.text  # the driver's own events were captured
    assert "event=card_left" in caplog.text
    assert card_data_in(caplog.text) == []
    assert all(
        record.levelno >= logging.WARNING
        for record in caplog.records
        if record.name.startswith("nfc")
    )


# -- the emulator ------------------------------------------------------------------------------


def test_emulator_carries_apdus_in_data_exchange_and_releases_the_card(
    emulator: Pn532Emulator,
) -> None:
    """InDataExchange: the PN532 firmware runs ISO-DEP itself and the host sends bare APDUs."""
    transport = nfc.clf.transport.TTY(emulator.port)
    device = nfc.clf.pn532.init(transport)
    device._path = emulator.port
    card = EchoCard(size=4)
    emulator.present(card)
    assert device.sense_tta(nfc.clf.RemoteTarget("106A")) is not None
    answer, more = device.chipset.in_data_exchange(bytearray(SELECT_PPSE), 1.0)
    assert (bytes(answer), more) == (EchoCard(size=4).transceive(SELECT_PPSE), False)
    assert device.chipset.command(Cmd.IN_RELEASE, b"\x01", 0.1) == b"\x00"
    with pytest.raises(nfc.clf.pn53x.Chipset.Error):  # released: the card no longer answers
        device.chipset.in_data_exchange(bytearray(SELECT_PPSE), 1.0)
    device.close()
    assert card.commands == [SELECT_PPSE]


# -- the emulator's host link -------------------------------------------------------------------


@pytest.fixture
def line(emulator: Pn532Emulator) -> Iterator[serial.Serial]:
    port = serial.Serial(emulator.port, 115200, timeout=0.2)
    yield port
    port.close()


def test_emulator_acknowledges_and_answers_a_command(line: serial.Serial) -> None:
    line.write(GET_FIRMWARE_VERSION_FRAME)
    answer = response_frame(0x02, bytes.fromhex("32010607"))
    assert line.read(len(ACK) + len(answer)) == ACK + answer


def test_emulator_sends_its_answer_again_on_nack(line: serial.Serial) -> None:
    line.write(GET_FIRMWARE_VERSION_FRAME)
    answer = response_frame(0x02, bytes.fromhex("32010607"))
    assert line.read(len(ACK) + len(answer)) == ACK + answer
    line.write(NACK)
    assert line.read(len(answer)) == answer


def test_emulator_ignores_a_frame_with_a_bad_checksum(line: serial.Serial) -> None:
    corrupted = bytearray(GET_FIRMWARE_VERSION_FRAME)
    corrupted[-2] ^= 0xFF
    line.write(bytes(corrupted))
    assert line.read(6) == b""  # no ACK: the host times out, as with the chip
