"""The Linux hardware watchdog (/dev/watchdog). Implements `Watchdog`.

Linux kernel, Documentation/watchdog/watchdog-api.rst: opening the device starts the timer;
every write of any character resets it ("kick"); if the timer runs out the board resets.
Writing the magic character 'V' and then closing disarms it ("magic close"); a close without
it leaves the watchdog running (or, with CONFIG_WATCHDOG_NOWAYOUT, it can never be disarmed),
so a crashed daemon still ends in a reset. A write of any other character after 'V' cancels
the magic close again, which is why `kick` writes a NUL and never 'V'.

This driver keeps no thread and never kicks on its own: the daemon kicks from its main loop
only while it is healthy (in step with systemd's WatchdogSec), so a hung loop stops the kicks.
Building it opens nothing; `arm` opens the device (which starts the timer), so the daemon arms
it last, once the devices are up and just before it tells systemd READY. `arm` reads the
timeout the device runs with (WDIOC_GETTIMEOUT, watchdog-api.rst "Setting and getting the
timeout"; the Pi's bcm2835_wdt defaults to 15 s and allows at most about 15 s), and refuses
one shorter than `MIN_TIMEOUT_S`, which the daemon's loop (kicking at least every
`POLL_S` = 0.1 s) could not keep up with under load. A stand-in without the ioctl (a regular
file or a pty in tests) has no timeout to read: `timeout_s` is then None. `path` is
configurable.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass

from hardware.ports import DeviceFault

KICK = b"\x00"
MAGIC_CLOSE = b"V"
# include/uapi/linux/watchdog.h: WDIOC_GETTIMEOUT = _IOR('W', 7, int)
WDIOC_GETTIMEOUT = 0x80045707
MIN_TIMEOUT_S = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchdogSettings:
    """[hardware.watchdog]."""

    path: str = "/dev/watchdog"
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"hardware.watchdog.path: must be absolute, got {self.path!r}")


class LinuxWatchdog:
    """`arm` opens (the timer starts), `kick` resets the timer, `stop` disarms (magic close)
    and closes."""

    def __init__(self, settings: WatchdogSettings) -> None:
        self.path = settings.path
        self._fd: int | None = None
        self._stopped = False
        self.timeout_s: int | None = None

    def arm(self) -> None:
        """Open the device and read its timeout. DeviceFault if it cannot be opened or runs
        with a timeout too short to keep up with (the device is then disarmed again)."""
        if self._fd is not None:
            return
        try:
            # O_NOCTTY: a pty stand-in must not become our controlling terminal.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise DeviceFault(f"watchdog {self.path}: cannot open: {exc}") from exc
        self._stopped = False
        try:
            raw = fcntl.ioctl(self._fd, WDIOC_GETTIMEOUT, struct.pack("i", 0))
        except OSError:
            self.timeout_s = None  # not a watchdog device (a test's stand-in): nothing to read
        else:
            (self.timeout_s,) = struct.unpack("i", raw)
        if self.timeout_s is not None and self.timeout_s < MIN_TIMEOUT_S:
            timeout = self.timeout_s
            self.stop()
            raise DeviceFault(
                f"watchdog {self.path}: timeout {timeout} s is shorter than {MIN_TIMEOUT_S} s"
            )

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            state = "already stopped" if self._stopped else "not armed"
            raise DeviceFault(f"watchdog {self.path}: {state}")
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
            self._stopped = True
            os.close(fd)
