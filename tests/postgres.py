"""A real PostgreSQL server for the tests, started from Debian's binaries in a temporary
directory (no system service): `initdb`, then `postgres` on a free loopback port, stopped at
the end of the test session. Each test gets a database of its own.

PostgreSQL refuses to run as root; as root (CI) the server runs as the `postgres` user that
Debian's package creates. Durability settings are off: these tests are about the gateway's
transactions, not the server's disk.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

START_TIMEOUT_S = 30.0


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server; `database()` makes a new empty database and returns its URL.

    `root`: a directory to keep the server's files in (a benchmark keeps its generated data
    there and starts again on it later); by default a temporary one, removed by `stop`."""

    def __init__(self, root: Path | None = None) -> None:
        self.bindir = _bindir()
        self.kept = root is not None
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ev-pg-"))
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._serve()

    def _initdb(self) -> None:
        subprocess.run(
            [
                *self._as,
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )

    def _serve(self) -> None:
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *self._as,
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()  # the server has its own descriptor
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    log = (self.root / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                time.sleep(0.1)

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def database(self, template: str = "template1") -> str:
        """A new database, copied from `template` (an empty one by default)."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.kept:
            # Kept data is started again later: a fast shutdown (pg_ctl's default) with its
            # checkpoint, waited for.
            subprocess.run(
                [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "stop"],
                check=False,
                capture_output=True,
            )
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.kept:
            shutil.rmtree(self.root, ignore_errors=True)


def running_server() -> Iterator[PostgresServer]:
    """For a session-scoped fixture: a started server, stopped afterwards."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
