"""A real small file system for tests that fill a disk: a size-limited tmpfs mounted by the
test (mounting needs root: elsewhere the test cannot run, and says so), and `fill`, which
writes until the file system refuses another byte."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's notation: "12m", "256k") at `mount_point`, unmounted after."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
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


def fill(fs: Path, name: str = "filler") -> Path:
    """Write a file until the file system refuses another byte (ENOSPC)."""
    filler = fs / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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
