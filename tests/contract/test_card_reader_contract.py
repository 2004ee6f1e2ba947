"""The `CardReader` contract, run over the simulator and the nfcpy driver on the PN532 emulator.

Cards are the scripted simulator cards (`hardware/sim/cards/*.card`), so the same profile is
answered through `SimReader` directly and through nfcpy, ISO-DEP and the emulated PN532. The
PN532 runs in a process of its own at real-time priority (`hardware/emulators/remote.py`), as
the chip is hardware: inside the test's interpreter, at load average ~22 on two cores, its
ACK missed nfcpy's 100 ms window and the driver rightly reported the reader lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from drivers.backoff import Backoff
from drivers.nfc_reader import NfcReader
from hardware.emulators.remote import EmulatorProcess
from hardware.ports import CardGone, CardReader, CardTarget, ReaderFault
from hardware.sim.card_script import ScriptedCard, load_named
from hardware.sim.reader import SimReader

pytestmark = pytest.mark.timeout(60)

SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
SELECT_VISA = bytes.fromhex("00A4040007A000000003101000")
# GET PROCESSING OPTIONS with a 33-byte PDOL answer (EMV Book 3 6.5.8), zeros for the data.
GET_PROCESSING_OPTIONS = bytes.fromhex("80A80000238321") + bytes(33) + b"\x00"
READ_RECORD_1 = bytes.fromhex("00B2010C00")
POLL_S = 2.0  # long enough for any reader to find a card that is there
PROMPT_S = 1.0  # "promptly" / "within a bounded time"


@dataclass
class ReaderRig:
    reader: CardReader
    present: Callable[[ScriptedCard], None]
    remove: Callable[[ScriptedCard], None]  # the card leaves the field
    unplug: Callable[[], None]  # the reader stops answering
    replug: Callable[[], None]
    # The APDUs a presented card received (the emulated PN532's card lives in its process).
    card_commands: Callable[[ScriptedCard], list[bytes]]


def sim_rig() -> Iterator[ReaderRig]:
    reader = SimReader()

    def remove(card: ScriptedCard) -> None:
        reader.remove()
        card.remove()  # the simulator hands out the card itself, so the card must know

    def card_commands(card: ScriptedCard) -> list[bytes]:
        return [command for command, _ in card.history]

    yield ReaderRig(reader, reader.present, remove, reader.unplug, reader.replug, card_commands)
    reader.close()


def nfc_rig(emulators: EmulatorProcess) -> Iterator[ReaderRig]:
    emulator = emulators.pn532()
    reader = NfcReader(emulator.port, backoff=Backoff(initial_s=0.05, maximum_s=0.2))

    def present(card: ScriptedCard) -> None:
        emulator.present(card)

    def remove(card: ScriptedCard) -> None:
        del card  # out of the field, the emulated card is out of reach
        emulator.remove()

    def card_commands(card: ScriptedCard) -> list[bytes]:
        del card  # the copy in the emulator's process received them
        return emulator.card_commands

    yield ReaderRig(reader, present, remove, emulator.unplug, emulator.replug, card_commands)
    reader.close()
    assert emulator.card_errors == []


@pytest.fixture(scope="module")
def emulators() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as process:
        yield process


@pytest.fixture(params=["sim", "nfc"])
def rig(request: pytest.FixtureRequest) -> Iterator[ReaderRig]:
    if request.param == "sim":
        yield from sim_rig()
    else:
        yield from nfc_rig(request.getfixturevalue("emulators"))


def visa() -> ScriptedCard:
    return load_named("visa").card()


def test_presented_card_is_returned_once(rig: ReaderRig) -> None:
    card = visa()
    rig.present(card)
    target = rig.reader.poll(POLL_S)
    assert target is not None
    assert target.uid == card.uid
    assert target.iso_dep
    assert rig.reader.poll(0.3) is None  # still in the field: not returned again
    assert target.transceive(SELECT_PPSE) == card.profile.script[0].response  # still usable


def test_card_that_left_and_came_back_is_returned_again(rig: ReaderRig) -> None:
    first = visa()
    rig.present(first)
    assert rig.reader.poll(POLL_S) is not None
    rig.remove(first)
    assert rig.reader.poll(0.2) is None
    rig.present(visa())
    assert rig.reader.poll(POLL_S) is not None


def test_poll_returns_none_within_the_timeout_when_no_card_is_there(rig: ReaderRig) -> None:
    started = time.monotonic()
    assert rig.reader.poll(0.3) is None
    assert 0.25 <= time.monotonic() - started < 0.3 + PROMPT_S


def test_poll_with_zero_timeout_does_not_wait(rig: ReaderRig) -> None:
    rig.reader.poll(0)  # the first poll may open the reader
    started = time.monotonic()
    assert rig.reader.poll(0) is None
    assert time.monotonic() - started < PROMPT_S


def test_close_makes_a_blocked_poll_return_promptly(rig: ReaderRig) -> None:
    rig.reader.poll(0)  # the reader is open and scanning
    results: list[CardTarget | None] = []
    polling = threading.Event()

    def blocked_poll() -> None:
        polling.set()
        results.append(rig.reader.poll(30.0))

    thread = threading.Thread(target=blocked_poll)
    thread.start()
    assert polling.wait(PROMPT_S)
    closed_at = time.monotonic()
    rig.reader.close()
    thread.join(PROMPT_S)
    assert not thread.is_alive()
    assert time.monotonic() - closed_at < PROMPT_S
    assert results == [None]


def test_transceive_round_trip(rig: ReaderRig) -> None:
    card = visa()
    rig.present(card)
    target = rig.reader.poll(POLL_S)
    assert target is not None
    answer = target.transceive(SELECT_PPSE)
    assert answer == card.profile.script[0].response
    assert answer[-2:] == b"\x90\x00"
    assert target.transceive(SELECT_VISA) == card.profile.script[1].response
    assert rig.card_commands(card) == [SELECT_PPSE, SELECT_VISA]


def test_uid_only_card_is_returned_with_its_uid(rig: ReaderRig) -> None:
    card = load_named("rfid").card()
    rig.present(card)
    target = rig.reader.poll(POLL_S)
    assert target is not None
    assert target.uid == bytes.fromhex("04A224B2C35E80")
    assert not target.iso_dep
    assert rig.reader.poll(0.3) is None


def test_card_removed_between_commands_raises_card_gone(rig: ReaderRig) -> None:
    card = visa()
    rig.present(card)
    target = rig.reader.poll(POLL_S)
    assert target is not None
    target.transceive(SELECT_PPSE)
    rig.remove(card)
    with pytest.raises(CardGone):
        target.transceive(SELECT_VISA)


def test_card_torn_away_mid_exchange_raises_card_gone(rig: ReaderRig) -> None:
    card = load_named("tearing").card()
    rig.present(card)
    target = rig.reader.poll(POLL_S)
    assert target is not None
    target.transceive(SELECT_PPSE)
    target.transceive(SELECT_VISA)
    assert target.transceive(GET_PROCESSING_OPTIONS)[-2:] == b"\x90\x00"
    with pytest.raises(CardGone):
        target.transceive(READ_RECORD_1)  # the card leaves the field during this command
    with pytest.raises(CardGone):
        target.transceive(READ_RECORD_1)  # and stays gone


def test_reader_that_stops_answering_raises_reader_fault(rig: ReaderRig) -> None:
    rig.reader.poll(0)
    rig.unplug()
    started = time.monotonic()
    with pytest.raises(ReaderFault):
        rig.reader.poll(0.5)
    assert time.monotonic() - started < 0.5 + PROMPT_S
    with pytest.raises(ReaderFault):  # and keeps saying so while it is gone
        rig.reader.poll(0.2)


def test_reader_answers_again_after_it_comes_back(rig: ReaderRig) -> None:
    rig.reader.poll(0)
    rig.unplug()
    with pytest.raises(ReaderFault):
        rig.reader.poll(0.2)
    rig.replug()
    card = visa()
    rig.present(card)
    deadline = time.monotonic() + 5.0
    target = None
    while target is None and time.monotonic() < deadline:
        target = rig.reader.poll(POLL_S)
    assert target is not None
    assert target.transceive(SELECT_PPSE) == card.profile.script[0].response


def poll_until_back(reader: CardReader, timeout: float = 5.0) -> CardTarget | None:
    """Poll a reader that is coming back from a failure until it answers: the card it returns
    (or None: it answered and found no new card)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return reader.poll(0.2)
        except ReaderFault:
            if time.monotonic() > deadline:
                raise


def test_card_presented_while_the_reader_is_down_is_returned_once_it_is_back(
    rig: ReaderRig,
) -> None:
    rig.reader.poll(0)
    rig.unplug()
    with pytest.raises(ReaderFault):
        rig.reader.poll(0.2)
    card = visa()
    rig.present(card)  # tapped during the failure, and left on the reader
    rig.replug()
    target = poll_until_back(rig.reader) or rig.reader.poll(POLL_S)
    assert target is not None
    assert target.transceive(SELECT_PPSE) == card.profile.script[0].response
    assert rig.reader.poll(0.3) is None  # and returned once


def test_card_returned_before_a_reader_failure_is_not_returned_again_while_it_stays(
    rig: ReaderRig,
) -> None:
    """The tap was over when the reader failed; the card stayed in the field through it."""
    first = visa()
    rig.present(first)
    assert rig.reader.poll(POLL_S) is not None
    rig.unplug()
    with pytest.raises(ReaderFault):
        rig.reader.poll(0.2)
    rig.replug()
    assert poll_until_back(rig.reader) is None
    assert rig.reader.poll(0.5) is None  # still in the field: not returned again
    rig.remove(first)
    assert rig.reader.poll(0.3) is None
    rig.present(visa())
    assert rig.reader.poll(POLL_S) is not None  # once it left, the next tap is a tap
