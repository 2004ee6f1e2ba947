"""`ev-terminal gateway --workers N`: N forked worker processes on one listening socket and one
database; a worker that dies is replaced; SIGTERM stops them all. On both back-ends."""

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

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def test_workers_share_the_socket_and_a_dead_one_is_replaced(db_url: str, tmp_path: Path) -> None:
    subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", "migrate", "--db", db_url],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [
            str(BIN / "ev-terminal"),
            "gateway",
            "--db",
            db_url,
            "--port",
            str(port),
            "--insecure-dev",
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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
        log.close()
    engine = open_engine(db_url)
    try:
        rows = Ledger(engine).all_authorizations()
    finally:
        engine.dispose()
    assert len(rows) == 60 and {r["status"] for r in rows} == {"approved"}
    assert "worker_died" in (tmp_path / "gateway.log").read_text()
