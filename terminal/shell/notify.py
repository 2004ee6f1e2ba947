"""systemd's notification protocol (sd_notify(3)), spoken directly over its datagram socket.

With `Type=notify` systemd passes the path of an `AF_UNIX` datagram socket in `NOTIFY_SOCKET`
(a leading `@` names an abstract socket); each message is one datagram of newline-separated
`KEY=VALUE` assignments. The daemon sends `READY=1` once the contactor is open and the devices
are up, `STATUS=...` when what it is doing changes, `WATCHDOG=1` from its main loop while it is
healthy (at half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises) and `STOPPING=1` when
it shuts down. Without `NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same way
outside systemd. A failed send is logged once, never raised: supervision must not stop the
kiosk.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("ev_terminal.notify")

MAX_STATUS_CHARS = 200  # systemctl status shows one line; keep it short


class Notifier:
    """Sends sd_notify messages to one socket; thread-safe (one datagram per call)."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False
        self.last_status: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read `NOTIFY_SOCKET`, and `WATCHDOG_USEC` when `WATCHDOG_PID` is absent or ours."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                usec = None
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, or None when systemd set none."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one message; True if it was sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("event=notify_failed socket=%s error=%s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        self.last_status = status
        return self.send({"READY": "1", "STATUS": status[:MAX_STATUS_CHARS]})

    def status(self, text: str) -> bool:
        """Send STATUS= only when it changed."""
        if text == self.last_status:
            return False
        self.last_status = text
        return self.send({"STATUS": text[:MAX_STATUS_CHARS]})

    def watchdog(self) -> bool:
        return self.send({"WATCHDOG": "1"})

    def stopping(self) -> bool:
        return self.send({"STOPPING": "1", "STATUS": "stopping"})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
