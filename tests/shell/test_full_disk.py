"""A full disk is a state, not a crash, tested on a real small file system (a size-limited
tmpfs that the test fills up): when the journal cannot write, the reserve file is given back
to the file system so the running session can still be settled, the contactor opens, the
kiosk goes out of service (`journal_full`), and it comes back by itself when space returns.
At start-up on a full disk, recovery settles what the journal holds from the reserve."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.simulate import Simulation, parse_script
from terminal.config import Config
from terminal.shell.daemon import JOURNAL_FULL
from terminal.shell.reserve import RESERVE_FILE
from tests.ledger_check import assert_ledger_agrees

FS_SIZE = "12m"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs mounted for this test (mounting needs root: else the test cannot run
    here, and says so)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs", str(mount_point)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(fs: Path) -> Path:
    """Write a file until the file system refuses another byte (ENOSPC)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            while _write(fd, bytes(size)):
                pass
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0
    return filler


def _write(fd: int, data: bytes) -> bool:
    """Append `data`; False once the file system is full (ENOSPC), any other error raised."""
    try:
        os.write(fd, data)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


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
