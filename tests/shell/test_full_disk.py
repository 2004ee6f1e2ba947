"""A full disk is a state, not a crash, tested on a real small file system (a size-limited
tmpfs that the test fills up): when the journal cannot write, the reserve file is given back
to the file system so the running session can still be settled, the contactor opens, the
kiosk goes out of service (`journal_full`), and it comes back by itself when space returns.
At start-up on a full disk, recovery settles what the journal holds from the reserve."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.simulate import Simulation, parse_script
from terminal import ocmf
from terminal.config import Config
from terminal.protection.counter import FileCounterStore
from terminal.protection.dukpt import next_counter
from terminal.protection.registers import REGISTERS_FILE, FileRegisterStore
from terminal.shell.daemon import JOURNAL_FULL
from terminal.shell.executor import CARD_KEYS
from terminal.shell.reserve import RESERVE_FILE
from terminal.shell.signed_readings import PAGINATION_FILE
from tests.ledger_check import assert_ledger_agrees
from tests.small_fs import fill, mounted

FS_SIZE = "12m"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs mounted for this test."""
    with mounted(tmp_path / "fs", FS_SIZE) as fs:
        yield fs


Make = Callable[[Path], Simulation]


@pytest.fixture
def make(config: Config, tmp_path: Path) -> Iterator[Make]:
    sims: list[Simulation] = []

    def build(data_dir: Path) -> Simulation:
        # The embedded gateway keeps its ledger off the small file system (it is the cloud).
        sim = Simulation(config=config, data_dir=data_dir, gateway_dir=tmp_path / "cloud")
        sims.append(sim)
        return sim

    yield build
    for sim in sims:
        sim.close()


def _step(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(sim.profiles)):
        sim.run_step(step)


def _screen(sim: Simulation) -> str | None:
    shown = sim.hardware.display.current
    return shown.name if shown is not None else None


def test_the_disk_filling_up_mid_session_settles_it_and_stops_new_ones(
    small_fs: Path, make: Make
) -> None:
    sim = make(small_fs / "kiosk")
    _step(sim, "tap visa\nplug\nev charge\nexpect charging\nwait 10m")
    assert (small_fs / "kiosk" / RESERVE_FILE).exists()
    filler = fill(small_fs)
    _step(sim, "wait 2m")

    assert JOURNAL_FULL in sim.daemon.status().faults
    assert not sim.hardware.contactor.feedback_closed()
    assert _screen(sim) == "out-of-order"
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["ended"] == "fault"
    assert result["acknowledged"]
    _step(sim, "unplug\nwait 1m\ntap mastercard\nwait 10s")
    assert len(sim.gateway.ledger.all_authorizations()) == 1  # no new hold on a full disk
    assert_ledger_agrees(sim)

    filler.unlink()  # someone cleaned up: the kiosk comes back by itself
    _step(sim, "wait 30s\nexpect idle")
    assert JOURNAL_FULL not in sim.daemon.status().faults
    assert (small_fs / "kiosk" / RESERVE_FILE).exists()
    _step(sim, "tap mastercard\nexpect plug-in\nwait 3m")
    assert len(sim.gateway.ledger.all_authorizations()) == 2
    assert_ledger_agrees(sim)


def test_a_start_on_a_full_disk_recovers_the_session_out_of_service(
    small_fs: Path, make: Make
) -> None:
    sim = make(small_fs / "kiosk")
    _step(sim, "tap visa\nplug\nev charge\nwait 20m")
    filler = fill(small_fs)
    _step(sim, "restart\nwait 1m")  # a power cut, and the disk was full when it came back

    assert JOURNAL_FULL in sim.daemon.status().faults
    assert _screen(sim) == "out-of-order"
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["acknowledged"]
    assert_ledger_agrees(sim)

    filler.unlink()
    _step(sim, "unplug\nwait 30s\nexpect idle\ntap visa\nexpect plug-in\nwait 3m")
    assert_ledger_agrees(sim)


def test_a_commit_that_finds_the_disk_full_spends_the_reserve_and_settles(
    small_fs: Path, make: Make
) -> None:
    """The write itself finds the disk full (SQLITE_FULL at COMMIT, as the WAL cannot grow),
    before the periodic room check has seen it coming."""
    sim = make(small_fs / "kiosk")
    _step(sim, "tap visa\nplug\nev charge\nexpect charging\nwait 10m")
    sim.daemon._next_room_check = 1 << 62  # the room check is not due: the write finds out
    filler = fill(small_fs)
    _step(sim, "wait 2m")

    assert not (small_fs / "kiosk" / RESERVE_FILE).exists()  # spent on the failed write
    assert JOURNAL_FULL in sim.daemon.status().faults
    assert not sim.hardware.contactor.feedback_closed()
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["acknowledged"]
    assert_ledger_agrees(sim)

    filler.unlink()
    sim.daemon._next_room_check = 0
    _step(sim, "unplug\nwait 30s\nexpect idle")
    assert (small_fs / "kiosk" / RESERVE_FILE).exists()


# -- the key state on a full disk ---------------------------------------------------------------
# A tap writes the DUKPT registers before the card's key is used, a signed reading writes the
# OCMF pagination counter before its number is used. Both files are rewritten in place
# (protection/slots.py), so a disk with no room at all stops neither.


def _key_dir(sim: Simulation) -> Path:
    return sim.key_dir or sim.data_dir / "keys" / "devices" / sim.config.station.id


def _key_state(sim: Simulation) -> tuple[int | None, int]:
    """The DUKPT counter the next tap will use and the last pagination number, from disk."""
    return _key_state_in(_key_dir(sim))


def _paginations(sim: Simulation) -> list[int]:
    """Every signed reading's pagination number (OCMF "PG": "T<n>"), as the gateway has them."""
    numbers = []
    for auth in sim.gateway.ledger.all_authorizations():
        for row in sim.gateway.ledger.readings(auth["id"]):
            numbers.append(int(str(ocmf.parse(str(row["ocmf"])).payload["PG"])[1:]))
    return numbers


def _hold_off_room_check(sim: Simulation) -> None:
    sim.daemon._next_room_check = 1 << 62  # the write itself finds the disk full


def test_a_disk_with_no_room_at_all_still_takes_a_tap_and_a_signed_reading(
    small_fs: Path, make: Make
) -> None:
    sim = make(small_fs / "kiosk")
    _step(sim, "tap visa\nplug\nev charge\nwait 10m\nunplug\nwait 1m")  # before
    counter, page = _key_state(sim)

    # A tap on an idle kiosk whose disk has just filled up to the last byte.
    _hold_off_room_check(sim)
    filler = fill(small_fs)
    _step(sim, "tap mastercard\nwait 1m")
    after_tap, _ = _key_state(sim)
    assert counter is not None and after_tap == next_counter(counter)  # used, saved first
    assert CARD_KEYS not in sim.daemon.status().faults
    assert JOURNAL_FULL in sim.daemon.status().faults  # the session's record found it full
    assert _screen(sim) == "out-of-order"

    filler.unlink()
    sim.daemon._next_room_check = 0
    _step(sim, "wait 30s\nexpect idle")
    (small_fs / "filler").unlink(missing_ok=True)

    # A session charging when the disk fills up to the last byte: its end reading is signed.
    _step(sim, "tap visa\nplug\nev charge\nexpect charging\nwait 5m")
    _, page_charging = _key_state(sim)
    _hold_off_room_check(sim)
    filler = fill(small_fs)
    _step(sim, "unplug\nwait 1m")
    _, page_ended = _key_state(sim)
    assert page_ended > page_charging  # reserved on the full disk, in place
    assert CARD_KEYS not in sim.daemon.status().faults
    last = sim.results()[-1]
    assert last["settlement"] == "captured" and last["acknowledged"]
    kinds = [r["kind"] for r in sim.gateway.ledger.readings(last["session_id"])]
    assert kinds == ["begin", "end"]

    filler.unlink()
    sim.daemon._next_room_check = 0
    _step(sim, "wait 30s\nexpect idle\ntap mastercard\nplug\nev charge\nwait 5m\nunplug\nwait 1m")
    assert sim.results()[-1]["settlement"] == "captured"  # after
    numbers = _paginations(sim)
    assert len(numbers) == len(set(numbers)) == 6 and numbers == sorted(numbers)
    assert min(numbers) <= page < max(numbers)
    assert CARD_KEYS not in sim.daemon.status().faults
    assert_ledger_agrees(sim)


def _older_format(key_dir: Path) -> None:
    """The key files as a device provisioned before slot files kept them (replaced by
    rename on every write, so each write needs new blocks)."""
    registers = FileRegisterStore(key_dir / REGISTERS_FILE).load()
    (key_dir / REGISTERS_FILE).write_text(registers.to_text())
    page = FileCounterStore(key_dir / PAGINATION_FILE).load()
    (key_dir / PAGINATION_FILE).write_text(f"{page:08X}\n")


def test_key_files_that_cannot_be_written_are_a_fault_that_clears_when_space_returns(
    tmp_path: Path, make: Make
) -> None:
    """The key directory on its own small file system, full, with its files in the older
    format: they cannot be written at start. The kiosk is out of service (`card_keys`) and
    comes back by itself once they can be, numbering on from where it was."""
    sim = make(tmp_path / "kiosk")
    _step(sim, "tap visa\nplug\nev charge\nwait 10m\nunplug\nwait 1m")  # before
    device = _key_dir(sim)
    sim.close()
    with mounted(tmp_path / "keyfs", "64k") as keyfs:
        key_dir = keyfs / device.name
        shutil.copytree(device, key_dir)
        _older_format(key_dir)
        counter, page = _key_state_in(key_dir)
        filler = fill(keyfs)
        sim = Simulation(
            config=sim.config,
            data_dir=tmp_path / "kiosk",
            key_dir=key_dir,
            gateway_dir=tmp_path / "cloud",
        )
        try:
            _step(sim, "wait 1m")
            assert CARD_KEYS in sim.daemon.status().faults  # during
            assert _screen(sim) == "out-of-order"
            _step(sim, "tap visa\nwait 1m")  # no key is used while out of service
            assert _key_state_in(key_dir) == (counter, page)

            filler.unlink()  # room again: the next check writes the key files, in place now
            _step(sim, "wait 30s\nexpect idle")
            assert CARD_KEYS not in sim.daemon.status().faults
            assert FileRegisterStore(key_dir / REGISTERS_FILE).in_place()
            assert FileCounterStore(key_dir / PAGINATION_FILE).in_place()
            fill(keyfs)  # and full again: nothing stops now
            _step(sim, "tap mastercard\nplug\nev charge\nwait 5m\nunplug\nwait 1m")  # after
            assert CARD_KEYS not in sim.daemon.status().faults
            [*_, last] = sim.results()
            assert last["settlement"] == "captured" and last["acknowledged"]
            assert counter is not None and _key_state_in(key_dir)[0] == next_counter(counter)
            numbers = _paginations(sim)
            assert len(numbers) == len(set(numbers)) == 4 and numbers == sorted(numbers)
            assert numbers[1] == page < numbers[2]
            assert_ledger_agrees(sim)
        finally:
            sim.close()


def _key_state_in(key_dir: Path) -> tuple[int | None, int]:
    counter = FileRegisterStore(key_dir / REGISTERS_FILE).load().counter
    return counter, FileCounterStore(key_dir / PAGINATION_FILE).load()
