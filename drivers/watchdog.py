"""The Linux hardware watchdog (/dev/watchdog). Implements `Watchdog`.

Linux kernel, Documentation/watchdog/watchdog-api.rst: opening the device starts the timer;
every write of any character resets it ("kick"); if the timer runs out the board resets.
Writing the magic character 'V' and then closing disarms it ("magic close"); a close without
it leaves the watchdog running (or, with CONFIG_WATCHDOG_NOWAYOUT, it can never be disarmed),
so a crashed daemon still ends in a reset. A write of any other character after 'V' cancels
the magic close again, which is why `kick` writes a NUL and never 'V'.

This driver keeps no thread and never kicks on its own: the daemon kicks from its main loop
only while it is healthy (in step with systemd's WatchdogSec), so a hung loop stops the kicks.
The device is opened by the constructor, so build it when the daemon is ready to kick. `path`
is configurable; tests use a regular file or a pty in its place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hardware.ports import DeviceFault

KICK = b"\x00"
MAGIC_CLOSE = b"V"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchdogSettings:
    """[hardware.watchdog]."""

    path: str = "/dev/watchdog"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"hardware.watchdog.path: must be absolute, got {self.path!r}")


class LinuxWatchdog:
    """Open arms, `kick` resets the timer, `stop` disarms (magic close) and closes."""

    def __init__(self, settings: WatchdogSettings) -> None:
        self.path = settings.path
        try:
            # O_NOCTTY: a pty stand-in must not become our controlling terminal.
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise DeviceFault(f"watchdog {self.path}: cannot open: {exc}") from exc

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise DeviceFault(f"watchdog {self.path}: already stopped")
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            raise DeviceFault(f"watchdog {self.path}: write failed: {exc}") from exc
        if written != len(data):
            raise DeviceFault(f"watchdog {self.path}: short write")

    def kick(self) -> None:
        self._write(KICK)

    def stop(self) -> None:
        """Magic close. Idempotent; the file is closed even if the write fails."""
        if self._fd is None:
            return
        try:
            self._write(MAGIC_CLOSE)
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)
