"""A real PostgreSQL server for the tests, started from Debian's binaries in a temporary
directory (no system service): `initdb`, then `postgres` on a free loopback port, stopped at
the end of the test session. Each test gets a database of its own.

PostgreSQL refuses to run as root; as root (CI) the server runs as the `postgres` user that
Debian's package creates, as a direct child of the test process (`setpriv` execs it; under
`runuser`, which forks, the process we signalled was not the server). Durability settings
are off: these tests are about the gateway's transactions, not the server's disk, so it is
stopped by an immediate shutdown.

No server outlives its test run:
- `stop()` sends SIGQUIT (PostgreSQL's immediate shutdown: it ends its backends at once, where
  SIGTERM's smart shutdown waits for every client to disconnect) and SIGKILL after a bound;
- the server is started with the parent-death signal (Linux `PR_SET_PDEATHSIG`) set to
  SIGQUIT, so a test process killed before its fixtures end (SIGKILL, a timeout that exits)
  takes its server with it (the signal follows the thread that started the server: start it
  from a thread that lives as long as the server is needed, as fixtures and benches do);
- each server directory names its owner's pid, and `sweep_orphans()` (run before a start)
  stops and removes the servers of owners that are gone.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.ports import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PREFIX = "ev-pg-"
OWNER_FILE = "owner.pid"
# A directory with no owner file (an older harness's) is only removed when it is this old and
# no server runs in it, so a run of the older harness inside `initdb` is left alone.
UNOWNED_GRACE_S = 600.0


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    return Path(found[-1]).parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    """The first line of a pid file, or None if there is none to read."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _server_pid(root: Path) -> int | None:
    """The postmaster running in `root`, from its `postmaster.pid`, if it is still that server
    (a pid is checked against the process's command line, so a reused pid is never signalled)."""
    pid = _read_pid(root / "data" / "postmaster.pid")
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if str(root / "data").encode() in cmdline else None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _end_server(root: Path) -> None:
    """Stop the server running in `root` that is not our child: immediate shutdown, then kill."""
    pid = _server_pid(root)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(pid, STOP_TIMEOUT_S)


def sweep_orphans(tmp: Path | None = None) -> list[Path]:
    """Stop and remove the servers whose test process is gone; returns the directories removed.

    A directory whose owner is alive is another run's and is never touched."""
    removed: list[Path] = []
    for root in sorted(Path(tmp or tempfile.gettempdir()).glob(PREFIX + "*")):
        owner = _read_pid(root / OWNER_FILE)
        if owner is not None:
            if _alive(owner):
                continue
        else:
            # An older harness's directory: removed once old and empty of a running server;
            # a server in it is left to whoever started it.
            try:
                age = time.time() - root.stat().st_mtime
            except OSError:
                continue
            if age < UNOWNED_GRACE_S or _server_pid(root) is not None:
                continue
        _end_server(root)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


class PostgresServer:
    """One server; `database()` makes a new empty database and returns its URL.

    `root`: a directory to keep the server's files in (a benchmark keeps its generated data
    there and starts again on it later); by default a temporary one, removed by `stop`."""

    def __init__(self, root: Path | None = None) -> None:
        self.bindir = _bindir()
        self.kept = root is not None
        if root is None:
            sweep_orphans()
            self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
            (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root
        self.data = self.root / "data"
        self.port = free_port()
        # util-linux's setpriv changes the user and arms the parent-death signal, then
        # execs: the server is our direct child (runuser would fork and stay in between).
        self._as: list[str] = ["setpriv"]
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as += ["--reuid=postgres", "--regid=postgres", "--clear-groups"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._serve()

    def _initdb(self) -> None:
        subprocess.run(
            [
                *self._as,
                "--",
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
                "--pdeathsig=QUIT",
                "--",
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
                    log_text = (self.root / "server.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start:\n{log_text}") from None
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
        """A kept server: fast shutdown with its checkpoint (it is started again later). Any
        other: immediate shutdown (clients still connected do not hold it up). SIGKILL after
        a bound; the backends leave with their postmaster. Then a temporary directory goes."""
        if self.process is not None and self.kept:
            # pg_ctl's default mode is fast; it waits for the server to end.
            subprocess.run(
                [*self._as, "--", str(self.bindir / "pg_ctl"), "-D", str(self.data), "stop"],
                check=False,
                capture_output=True,
            )
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if not self.kept:
            _end_server(self.root)  # a server our Popen does not know (never expected; cheap)
            shutil.rmtree(self.root, ignore_errors=True)


def running_server() -> Iterator[PostgresServer]:
    """For a session-scoped fixture: a started server, stopped afterwards."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
