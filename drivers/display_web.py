"""The kiosk web page: a local web server for a touchscreen running Chromium in kiosk mode.
Implements `Display`.

The daemon serves one page on the loopback interface (`chromium --kiosk http://127.0.0.1:8090/`)
from the standard library's `http.server`, in a thread of its own, so no web framework sits in
the terminal's memory. Routes:

| route          | what                                                                |
|----------------|---------------------------------------------------------------------|
| `GET /`        | the page: one HTML document with its style and script inline (kept  |
|                | beside this module as display_web.html, .css and .js)               |
| `GET /events`  | server-sent events (HTML Living Standard, 9.2): `event: frame`,     |
|                | `data:` the frame as JSON; the current frame at once, then each new |
|                | one; a comment line every `HEARTBEAT_S` so a dead client is noticed; |
|                | `retry:` 500 ms, so the page reconnects quickly after a restart     |
| `GET /frame`   | the current frame as JSON (diagnostics)                             |

A frame's JSON is `{"seq", "name", "title", "lines", "fields", "tone", "qr_url", "qr_svg",
"total", "code", "language", "labels", "variants"}`; each of `variants` (the same screen in another
language) has the text keys only. The QR code of a receipt is drawn server-side as SVG (the
`qrcode` package, error correction level M), and the pictograms are inline SVG, so the page
needs nothing from the network. The page switches its layout on the frame's `name`
(`body[data-screen]`), its step indicator on the step that screen belongs to
(`body[data-step]`: tap, plug in, charge, done) and its colours on `tone`; its language
button cycles through the frame's languages until the session ends; a receipt's total stays
in view in a bar of its own, and its link code's line (the one holding `code`) is set
large; type is sized from the screen (800x480 up to 1280x800, and portrait) and shrunk
only when a long receipt would not fit. It puts every string in with `textContent`, never
as markup, and reconnects by itself (EventSource does) if the daemon restarts.

`show` only swaps the current frame and wakes the event streams: it never blocks on a client.
Threads: "kiosk web display" (the server loop) and one per open event stream (the page keeps
one); `close` stops the loop, ends the streams and joins the loop with a bounded timeout.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import qrcode
import qrcode.constants
import qrcode.image.svg

from hardware.ports import Frame

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RECONNECT_MS = 500
JOIN_TIMEOUT_S = 2.0
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebDisplaySettings:
    """[hardware.display] with kind = "web". `port` 0 picks a free port (tests)."""

    host: str = "127.0.0.1"
    port: int = 8090

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK_NAMES:
            try:
                loopback = ipaddress.ip_address(self.host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(
                    f"hardware.display.host: must be a loopback address such as 127.0.0.1 "
                    f"(the page is for the kiosk's own browser), got {self.host!r}"
                )
        if isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ValueError(f"hardware.display.port: must be 0..65535, got {self.port!r}")


@lru_cache(maxsize=8)
def qr_svg(url: str) -> str:
    """The QR code of `url` as an inline SVG document (one path, scalable)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(url)
    code.make(fit=True)
    image = code.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return str(image.to_string(encoding="unicode"))


def _words(frame: Frame) -> dict[str, Any]:
    return {
        "title": frame.title,
        "lines": list(frame.lines),
        "fields": [[label, value] for label, value in frame.fields],
        "total": list(frame.total) if frame.total is not None else None,
        "code": list(frame.code) if frame.code is not None else None,
        "language": frame.language,
        "labels": dict(frame.labels),
    }


def frame_json(frame: Frame, seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "name": frame.name,
        **_words(frame),
        "tone": frame.tone.value,
        "qr_url": frame.qr,
        "qr_svg": qr_svg(frame.qr) if frame.qr else None,
        "variants": [_words(variant) for variant in frame.variants],
    }


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    display: WebDisplay


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        display = self.server.display
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/frame":
            self._send(200, "application/json", json.dumps(display.snapshot()).encode())
        elif path == "/events":
            self._stream(display)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, display: WebDisplay) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = -1
        try:
            # Reconnect quickly after a daemon restart (the default is a few seconds).
            self.wfile.write(f"retry: {RECONNECT_MS}\n\n".encode())
            while True:
                current = display.wait_newer(seen, HEARTBEAT_S)
                if current is None:
                    return  # the display is closing
                if current["seq"] == seen:
                    self.wfile.write(b": heartbeat\n\n")
                else:
                    seen = current["seq"]
                    data = json.dumps(current, separators=(",", ":"))
                    self.wfile.write(f"event: frame\ndata: {data}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away; it reconnects by itself

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("event=http_request " + format, *args)


class WebDisplay:
    """Implements `hardware.ports.Display` as a local web page; see the module docstring."""

    def __init__(self, settings: WebDisplaySettings, *, starting: Frame | None = None) -> None:
        """`starting` is shown until the first `show`: the composition root renders it in the
        station's language (`terminal.core.screens.Starting`); English without one."""
        self.settings = settings
        self._cond = threading.Condition()
        self._seq = 0
        self._current: dict[str, Any] = frame_json(starting or STARTING, 0)
        self._closed = False
        server_class = _Server6 if ":" in settings.host else _Server
        try:
            self._server = server_class((settings.host, settings.port), _Handler)
        except OSError as exc:
            raise OSError(
                f"kiosk web page cannot listen on {settings.host}:{settings.port}: {exc}"
            ) from exc
        self._server.display = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="kiosk web display",
            daemon=True,
        )
        self._thread.start()
        log.info("event=web_display_listening url=%s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}/"

    def show(self, frame: Frame) -> None:
        try:
            with self._cond:
                self._seq += 1
                self._current = frame_json(frame, self._seq)
                self._cond.notify_all()
        except Exception:  # the port's contract: show never raises for content
            log.exception("event=web_display_frame_failed screen=%s", frame.name)

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return self._current

    def wait_newer(self, seq: int, timeout: float) -> dict[str, Any] | None:
        """The current frame once its seq differs from `seq`, or after `timeout` (then the
        caller sees the same seq and sends a heartbeat); None once the display is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq != seq, timeout)
            return None if self._closed else self._current

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(JOIN_TIMEOUT_S)


# The English fallback of terminal.core.screens.Starting, for a display built without one.
STARTING = Frame(name="starting", title="Starting", lines=("Please wait...",))


def _page() -> str:
    """The page, its style and script put inline (one document, one request)."""
    here = Path(__file__).resolve().parent
    html = (here / "display_web.html").read_text(encoding="utf-8")
    style = (here / "display_web.css").read_text(encoding="utf-8")
    script = (here / "display_web.js").read_text(encoding="utf-8")
    return html.replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)


PAGE = _page()
