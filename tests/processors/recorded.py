"""Recorded answers over real HTTP, for what a local peer does not model.

A `RecordedPeer` answers each (method, path) with a status and a JSON file of
`tests/processors/recorded/<processor>/`, taken from the processor's documentation, and keeps
what it was sent. Paths are matched without their query string.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

RECORDED = Path(__file__).resolve().parent / "recorded"


@dataclass(frozen=True, slots=True)
class Sent:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordedPeer:
    routes: dict[tuple[str, str], tuple[int, str]]  # (method, path) -> (status, "stripe/x.json")
    sent: list[Sent] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordedPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered, so the status line, headers and body leave in one segment: written
            # apart, Nagle's algorithm and the client's delayed ACK add ~40 ms per answer.
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                peer.sent.append(
                    Sent(self.command, parts.path, parts.query, dict(self.headers), body)
                )
                status, name = peer.routes.get((self.command, parts.path), (404, ""))
                data = (RECORDED / name).read_bytes() if name else b'{"error": {}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

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
