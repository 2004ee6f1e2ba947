"""Loopback ports for the peers the tests start (PostgreSQL, Prism, LNbits, nginx, gateways
in subprocesses) and for the peers that must be unreachable.

A peer in another process takes its port by number, so a port is chosen first and bound by
the peer a moment later. The kernel's own choice (`bind(("127.0.0.1", 0))`) comes from the
ephemeral range, where every outgoing connection of the machine takes its local port too: in
that moment a client socket of this worker, of another pytest-xdist worker or of another run
can take it. So `free_port` chooses below the ephemeral range, from a block of its own per
xdist worker (`PYTEST_XDIST_WORKER`, "gw0", "gw1", ...), starting at a random place in the
block and checking that the port can be bound now. Two workers never choose the same port;
the kernel never hands these out to a connection.

An "unreachable" peer needs a port that is certainly refused for as long as a test uses it:
a freed port may be bound again by anyone. `refused_port` holds a socket bound to it that
never listens, so a connection is refused (RST) and nobody else can bind it."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Linux's default ephemeral range starts at 32768 (net.ipv4.ip_local_port_range); below
# 10000 are the well-known and registered services a developer's machine may run.
LOWEST = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
BLOCK = 1_000


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


class _Ports:
    """The ports of this process's block, handed out in turn from a random start."""

    def __init__(self) -> None:
        blocks = max(1, (_ephemeral_start() - LOWEST) // BLOCK)
        self.first = LOWEST + (_worker_index() % blocks) * BLOCK
        self.next = random.randrange(BLOCK)

    def take(self) -> int:
        for _ in range(BLOCK):
            port = self.first + self.next
            self.next = (self.next + 1) % BLOCK
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"no free port in {self.first}-{self.first + BLOCK - 1}")


_PORTS = _Ports()


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, for a peer to bind by number."""
    return _PORTS.take()


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where every connection is refused while the block runs."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])
