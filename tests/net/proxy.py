"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for the terminal-to-gateway link.

Threads: one accepts, one per client connection. Each request is read whole (head and
Content-Length body) and then, by the plan the test set, forwarded untouched or hit by a fault:

- `DROP_BEFORE`: the connection is closed before the request reaches the gateway;
- `DROP_AFTER_SEND`: the request reaches the gateway, the client's connection is closed at once;
- `LOST_RESPONSE`: the gateway does the work and answers; the answer never arrives;
- `DELAY`: the answer is held longer than the terminal's timeout;
- `HTTP_500`: the gateway does the work; the client gets a 500;
- `TRUNCATED`: the answer is cut off in the middle of its body;
- `MALFORMED`: a 200 whose body is not JSON;
- `HOLD`: the request reaches the gateway, `on_hold` is told, and the answer is kept from
  the client until it hangs up (a crash test kills the client there: sent, not answered);
- `partitioned = True`: every connection is closed unanswered until it is set back.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IO_TIMEOUT_S = 10.0


class Fault(enum.Enum):
    DROP_BEFORE = "drop-before"
    DROP_AFTER_SEND = "drop-after-send"
    LOST_RESPONSE = "lost-response"
    DELAY = "delay"
    HTTP_500 = "http-500"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    HOLD = "hold"


@dataclass
class _Plan:
    fault: Fault
    match: str
    times: int


def _read_message(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One HTTP message (head + Content-Length body) from `sock`; None at end of stream."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    message = bytes(buffer[: head_end + length])
    del buffer[: head_end + length]
    return message


class FaultProxy:
    """Listens on 127.0.0.1; `start(upstream)` returns the URL to give the terminal."""

    def __init__(self, delay_s: float = 1.5) -> None:
        self.delay_s = delay_s
        self.partitioned = False
        self.requests: list[tuple[str, str]] = []  # (request line, what was done)
        self.bodies: list[bytes] = []  # every request's body, as it crossed the link
        # (request line, request body, answer body) of every answer passed on untouched
        self.answered: list[tuple[str, bytes, bytes]] = []
        self._plans: list[_Plan] = []
        self.on_hold: Callable[[str], None] = lambda line: None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._upstream: tuple[str, int] = ("127.0.0.1", 0)
        self._threads: list[threading.Thread] = []

    def start(self, upstream_url: str) -> str:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def inject(self, fault: Fault, *, match: str = "", times: int = 1) -> None:
        """Hit the next `times` requests whose request line contains `match`."""
        with self._lock:
            self._plans.append(_Plan(fault=fault, match=match, times=times))

    def clear(self) -> None:
        """Forget every planned fault."""
        with self._lock:
            self._plans.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(p.times for p in self._plans)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=IO_TIMEOUT_S)
        self._listener.close()

    # -- the threads ------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _fault_for(self, request_line: str) -> Fault | None:
        with self._lock:
            for plan in self._plans:
                if plan.match in request_line:
                    plan.times -= 1
                    if plan.times <= 0:
                        self._plans.remove(plan)
                    return plan.fault
        return None

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(IO_TIMEOUT_S)
        buffer = bytearray()
        with client:
            while not self._stop.is_set():
                try:
                    request = _read_message(client, buffer)
                except OSError:
                    return
                if request is None:
                    return
                line = request.split(b"\r\n", 1)[0].decode("latin-1")
                self.bodies.append(request.split(b"\r\n\r\n", 1)[1])
                if self.partitioned:
                    self.requests.append((line, "partitioned"))
                    return
                fault = self._fault_for(line)
                self.requests.append((line, fault.value if fault else "forwarded"))
                if fault is Fault.DROP_BEFORE:
                    return
                if fault is Fault.HOLD:
                    self._hold(client, request, line)
                    return
                if not self._exchange(client, request, fault):
                    return

    def _exchange(self, client: socket.socket, request: bytes, fault: Fault | None) -> bool:
        """Forward one request and answer the client as the fault says; False to hang up."""
        try:
            upstream = socket.create_connection(self._upstream, timeout=IO_TIMEOUT_S)
        except OSError:
            return False  # the gateway is down: the client sees its connection closed
        with upstream:
            try:
                upstream.sendall(request)
                if fault is Fault.DROP_AFTER_SEND:
                    return False
                response = _read_message(upstream, bytearray())
            except OSError:
                return False  # the gateway did not answer in time: the client sees no answer
        if response is None:
            return False
        head, _, body = response.partition(b"\r\n\r\n")
        match fault:
            case None:
                line, _, sent = request.partition(b"\r\n")
                self.answered.append((line.decode("latin-1"), sent.partition(b"\r\n\r\n")[2], body))
                client.sendall(response)
                return True
            case Fault.LOST_RESPONSE:
                return False
            case Fault.DELAY:
                time.sleep(self.delay_s)
                with contextlib.suppress(OSError):
                    client.sendall(response)
                return False
            case Fault.HTTP_500:
                body = b'{"detail":"internal error"}'
                client.sendall(_response(500, "Internal Server Error", body))
                return True
            case Fault.TRUNCATED:
                client.sendall(head + b"\r\n\r\n" + body[: len(body) // 2])
                return False
            case Fault.MALFORMED:
                client.sendall(_response(200, "OK", b'{"status": "approved", <'))
                return True
            case _:
                raise AssertionError(fault)

    def _hold(self, client: socket.socket, request: bytes, line: str) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=IO_TIMEOUT_S)
        except OSError:
            return
        with upstream, contextlib.suppress(OSError):
            upstream.sendall(request)
            self.on_hold(line)
            _read_message(upstream, bytearray())  # the gateway's answer, never passed on
        with contextlib.suppress(OSError):
            while client.recv(65536):  # until the client hangs up (or is killed)
                pass


def _response(status: int, reason: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
