"""The watchdog driver against a regular file and a pty standing in for /dev/watchdog."""

from __future__ import annotations

import os
import select
import tty
from pathlib import Path

import pytest

from drivers.watchdog import LinuxWatchdog, WatchdogSettings
from hardware.ports import DeviceFault


def test_kicks_write_one_byte_each_and_stop_writes_the_magic_v(tmp_path: Path) -> None:
    device = tmp_path / "watchdog"
    device.touch()
    watchdog = LinuxWatchdog(WatchdogSettings(path=str(device)))
    watchdog.arm()
    assert device.read_bytes() == b""  # opening arms; nothing is written until told
    assert watchdog.timeout_s is None  # a regular file has no timeout to read
    watchdog.kick()
    watchdog.kick()
    assert device.read_bytes() == b"\x00\x00"
    watchdog.stop()
    assert device.read_bytes() == b"\x00\x00V"
    watchdog.stop()  # idempotent
    assert device.read_bytes() == b"\x00\x00V"


def test_kick_after_stop_is_a_fault(tmp_path: Path) -> None:
    device = tmp_path / "watchdog"
    device.touch()
    watchdog = LinuxWatchdog(WatchdogSettings(path=str(device)))
    watchdog.arm()
    watchdog.stop()
    with pytest.raises(DeviceFault, match="stopped"):
        watchdog.kick()


def test_building_opens_nothing_and_a_kick_before_arm_is_a_fault(tmp_path: Path) -> None:
    watchdog = LinuxWatchdog(WatchdogSettings(path=str(tmp_path / "missing" / "watchdog")))
    with pytest.raises(DeviceFault, match="not armed"):
        watchdog.kick()


def read_available(fd: int) -> bytes:
    data = b""
    while select.select([fd], [], [], 0.5)[0]:
        data += os.read(fd, 64)
        if data.endswith(b"V"):
            break
    return data


def test_bytes_reach_the_device_through_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        watchdog = LinuxWatchdog(WatchdogSettings(path=os.ttyname(slave)))
        watchdog.arm()
        assert watchdog.timeout_s is None  # WDIOC_GETTIMEOUT is not a tty ioctl
        watchdog.kick()
        watchdog.stop()
        assert read_available(master) == b"\x00V"
    finally:
        os.close(slave)
        os.close(master)


def test_missing_device_is_a_fault(tmp_path: Path) -> None:
    watchdog = LinuxWatchdog(WatchdogSettings(path=str(tmp_path / "missing" / "watchdog")))
    with pytest.raises(DeviceFault, match="cannot open"):
        watchdog.arm()


def test_relative_path_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hardware\.watchdog\.path"):
        WatchdogSettings(path="dev/watchdog")
