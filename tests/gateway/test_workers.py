"""`ev-terminal gateway --workers N`: N forked worker processes on one port (a listening socket
each) and one database; a worker that dies is replaced; SIGTERM stops them all. On both
back-ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gateway.ledger import Ledger, open_engine
from tests.gateway.test_idempotency import authorization
from tests.ports import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(t) for t in text)
    return found


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/healthz", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None, "the gateway exited"
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)


def _two_workers(db_url: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`ev-terminal gateway --workers 2` on a migrated `db_url`, logging to gateway.log; the
    process and its port."""
    subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", "migrate", "--db", db_url],
        check=True,
        capture_output=True,
    )
    port = free_port()
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                *(str(BIN / "ev-terminal"), "gateway", "--db", db_url, "--port", str(port)),
                *("--insecure-dev", "--workers", "2"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def test_workers_share_the_socket_and_a_dead_one_is_replaced(db_url: str, tmp_path: Path) -> None:
    proc, port = _two_workers(db_url, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2

        def hold(n: int) -> int:
            aid = f"auth-workers-{n:04d}"
            answer = requests.post(
                url + "/v1/authorizations",
                json=authorization(aid),
                headers={"Idempotency-Key": f"{aid}:a"},
                timeout=30,
            )
            return answer.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hold, range(40))) == {200}

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(_children(proc.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        _wait(url, proc)
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hold, range(40, 60))) == {200}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    engine = open_engine(db_url)
    try:
        rows = Ledger(engine).all_authorizations()
    finally:
        engine.dispose()
    assert len(rows) == 60 and {r["status"] for r in rows} == {"approved"}
    assert "worker_died" in (tmp_path / "gateway.log").read_text()


def _established_on(port: int) -> set[int]:
    """Socket inodes of the connections accepted on `port` (from /proc/net/tcp)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                inodes.add(inode)
    return inodes


def _sockets_of(pid: int) -> set[int]:
    found: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def test_a_burst_of_connections_is_spread_over_the_workers(db_url: str, tmp_path: Path) -> None:
    """On one shared listening socket the first worker to wake took every waiting connection
    (asyncio accepts them all at once), so a burst (a fleet reconnecting, a proxy's
    keep-alive pool) was served by one worker while the others idled. Each worker has a
    socket of its own on the port now, and the kernel spreads connections over them."""
    proc, port = _two_workers(db_url, tmp_path)
    url = f"http://127.0.0.1:{port}"
    clients: list[socket.socket] = []
    try:
        _wait(url, proc)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        for client in clients:  # an answer on each: every connection has been accepted
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        accepted = _established_on(port)
        held = {pid: len(_sockets_of(pid) & accepted) for pid in _children(proc.pid)}
        assert sum(held.values()) == 32, held
        assert all(count > 0 for count in held.values()), held
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
