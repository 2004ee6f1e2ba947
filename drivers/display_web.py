"""The kiosk web page: a local web server for a touchscreen running Chromium in kiosk mode.
Implements `Display`.

The daemon serves one page on the loopback interface (`chromium --kiosk http://127.0.0.1:8090/`)
from the standard library's `http.server`, in a thread of its own, so no web framework sits in
the terminal's memory. Routes:

| route          | what                                                                |
|----------------|---------------------------------------------------------------------|
| `GET /`        | the page: one HTML document with its style and script inline        |
| `GET /events`  | server-sent events (HTML Living Standard, 9.2): `event: frame`,     |
|                | `data:` the frame as JSON; the current frame at once, then each new |
|                | one; a comment line every `HEARTBEAT_S` so a dead client is noticed; |
|                | `retry:` 500 ms, so the page reconnects quickly after a restart     |
| `GET /frame`   | the current frame as JSON (diagnostics)                             |

A frame's JSON is `{"seq", "name", "title", "lines", "fields", "tone", "qr_url", "qr_svg"}`.
The QR code of a receipt is drawn server-side as SVG (the `qrcode` package, error correction
level M), so the page needs nothing from the network. The page switches its layout on the
frame's `name` (`body[data-screen]`) and its colours on `tone`; it puts every string in with
`textContent`, never as markup, and reconnects by itself (EventSource does) if the daemon
restarts.

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


def frame_json(frame: Frame, seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "name": frame.name,
        "title": frame.title,
        "lines": list(frame.lines),
        "fields": [[label, value] for label, value in frame.fields],
        "tone": frame.tone.value,
        "qr_url": frame.qr,
        "qr_svg": qr_svg(frame.qr) if frame.qr else None,
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

    def __init__(self, settings: WebDisplaySettings) -> None:
        self.settings = settings
        self._cond = threading.Condition()
        self._seq = 0
        self._current: dict[str, Any] = frame_json(STARTING, 0)
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


STARTING = Frame(name="starting", title="Starting", lines=("Please wait...",))

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Charger</title>
<style>
  :root { --bg: #0f1b2d; --fg: #f4f6f8; --accent: #2e7dd7; }
  body[data-tone="busy"] { --accent: #2e7dd7; }
  body[data-tone="ok"] { --accent: #2f9e44; }
  body[data-tone="error"] { --accent: #d9480f; }
  * { box-sizing: border-box; }
  html, body { margin: 0; height: 100%; }
  body { background: var(--bg); color: var(--fg); cursor: none; user-select: none;
         font: 28px/1.35 system-ui, "DejaVu Sans", sans-serif; display: flex;
         flex-direction: column; }
  header { background: var(--accent); padding: 0.6em 1em; }
  h1 { margin: 0; font-size: 1.8em; }
  main { flex: 1; display: flex; gap: 1.5em; padding: 1em; align-items: flex-start; }
  #text { flex: 1; }
  #lines p { margin: 0 0 0.5em; }
  table { border-collapse: collapse; width: 100%; margin-top: 0.5em; }
  td { padding: 0.3em 0; border-bottom: 1px solid #ffffff33; }
  td.value { text-align: right; font-weight: 600; font-variant-numeric: tabular-nums; }
  body[data-screen="charging"] td.value { font-size: 1.5em; }
  #qr { width: 9em; background: #fff; padding: 0.4em; border-radius: 0.3em; }
  #qr svg { width: 100%; height: auto; display: block; }
  #qr p { color: #000; font-size: 0.5em; margin: 0.3em 0 0; text-align: center;
          overflow-wrap: anywhere; }
  #link { position: fixed; right: 0.5em; bottom: 0.3em; font-size: 0.5em; opacity: 0.6; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-screen="connecting" data-tone="info" data-seq="-1">
<header><h1 id="title">Connecting...</h1></header>
<main>
  <section id="text"><div id="lines"></div><table id="fields"></table></section>
  <figure id="qr" hidden><div id="qr-code"></div><p id="qr-url"></p></figure>
</main>
<div id="link">offline</div>
<script>
"use strict";
function render(frame) {
  document.getElementById("title").textContent = frame.title;
  const lines = document.getElementById("lines");
  lines.replaceChildren(...frame.lines.map((text) => {
    const p = document.createElement("p"); p.textContent = text; return p;
  }));
  const fields = document.getElementById("fields");
  fields.replaceChildren(...frame.fields.map(([label, value]) => {
    const row = document.createElement("tr");
    const name = document.createElement("td"); name.textContent = label;
    const cell = document.createElement("td"); cell.className = "value";
    cell.textContent = value; row.append(name, cell); return row;
  }));
  const qr = document.getElementById("qr");
  if (frame.qr_svg) {
    // Trusted markup: drawn by the daemon from the receipt URL, not from user input.
    const doc = new DOMParser().parseFromString(frame.qr_svg, "image/svg+xml");
    const svg = document.importNode(doc.documentElement, true);
    document.getElementById("qr-code").replaceChildren(svg);
    document.getElementById("qr-url").textContent = frame.qr_url;
    qr.hidden = false;
  } else {
    qr.hidden = true;
    document.getElementById("qr-code").replaceChildren();
  }
  document.body.dataset.tone = frame.tone;
  document.body.dataset.screen = frame.name;
  document.body.dataset.seq = String(frame.seq);
}
const source = new EventSource("/events");
source.addEventListener("frame", (e) => render(JSON.parse(e.data)));
source.onopen = () => { document.getElementById("link").textContent = ""; };
source.onerror = () => { document.getElementById("link").textContent = "offline"; };
</script>
</body>
</html>
"""
