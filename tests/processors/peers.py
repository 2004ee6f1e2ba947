"""Local peers for the processor adapters: started and stopped by the tests themselves.

- `start_process` runs a peer server (localstripe, Prism, LNbits) as a subprocess on a free
  port of 127.0.0.1 and waits until it answers; `stop` kills it with SIGKILL.
- `RecordingProxy` sits between an adapter and its peer: it forwards every request unchanged
  and records what was sent (method, path, headers, body) and how long the peer took, so a
  test can check a header reached the processor and the bench can subtract the peer's own
  answer time.
- `Inbox` is a real HTTP endpoint that receives a peer's webhooks.
"""

from __future__ import annotations

import http.client
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"peer did not listen on {port} in {timeout_s} s: {log.read_text()[-2000:]}")


def start_process(
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    timeout_s: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a peer in its own process group, its output in `log`, and wait for its port."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    wait_for_port(port, proc, timeout_s, log)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    answer_headers: dict[str, str]
    answer: bytes
    peer_seconds: float  # from the first byte forwarded to the peer's whole answer read


@dataclass
class RecordingProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that records each exchange with the peer."""

    upstream: str
    exchanges: list[Exchange] = field(default_factory=list)
    # Added to each request when set: a Prism ``Prefer`` header choosing which of the
    # documented examples the stateless mock answers with (https://docs.stoplight.io/docs/prism).
    prefer: str | None = None
    # When set, each request reaches the peer but its answer is lost on the way back (the
    # connection is closed unanswered): the processor acted, the caller cannot know.
    lose_answers: bool = False
    lose_only: str | None = None  # with `lose_answers`: lose only answers to this method
    # When it says yes to a request (method, path, body), the caller is kept waiting with no
    # answer until `release` is set (a process killed meanwhile never learns what happened):
    # the request reaches the peer first, unless `stall_unsent`. `stalled` is set on the way.
    stall: Callable[[str, str, bytes], bool] | None = None
    stall_unsent: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        target = urlsplit(self.upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered, so the status line, headers and body leave in one segment: written
            # apart, Nagle's algorithm and the client's delayed ACK add ~40 ms per answer.
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                stall = proxy.stall is not None and proxy.stall(self.command, self.path, body)
                if stall and proxy.stall_unsent:
                    self._hold()
                    return
                if proxy.prefer:
                    headers["Prefer"] = proxy.prefer
                conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
                started = time.perf_counter()
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    took = time.perf_counter() - started
                    status, answer_headers = answer.status, answer.getheaders()
                finally:
                    conn.close()
                proxy.exchanges.append(
                    Exchange(
                        self.command,
                        self.path,
                        dict(self.headers),
                        body,
                        status,
                        dict(answer_headers),
                        data,
                        took,
                    )
                )
                if stall:
                    self._hold()
                    return
                if proxy.lose_answers and proxy.lose_only in (None, self.command):
                    self.close_connection = True
                    return
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _hold(self) -> None:
                proxy.stalled.set()
                proxy.release.wait(timeout=120)
                self.close_connection = True

            do_GET = do_POST = do_DELETE = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class Inbox:
    """An HTTP endpoint on 127.0.0.1 that takes webhooks and answers 200."""

    received: queue.Queue[tuple[dict[str, str], bytes]] = field(default_factory=queue.Queue)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> Inbox:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                inbox.received.put((dict(self.headers), self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
