"""Run the gateway: as its own service (`ev-terminal gateway`) or embedded in a thread on
127.0.0.1 for the demo, the scripted simulator and tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.card_data import CardVault
from gateway.expiry import EXPIRE_EVERY_S, KeyExpiry
from gateway.ledger import Ledger, now, open_engine
from gateway.processors.simulated import SimulatedProcessor
from gateway.tls import ServerTLS, uvicorn_options

START_TIMEOUT_S = 10.0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket for uvicorn. TCP_NODELAY is set here (accepted sockets inherit it):
    uvicorn does not set it, and without it a response written in two segments waits for the
    client's delayed ACK, about 40 ms a request on Linux."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


class EmbeddedGateway:
    """The reference gateway with the simulated processor, on a loopback port in a thread.

    `down()` stops listening (connections are refused, like a lost link) and `up()` listens
    again on the same port with the same ledger. With `key_dir` (a fleet's gateway key
    directory) it decrypts and checks the card data of payment cards (`CardVault`). `clock`
    and `expire_every_s` let tests run the idempotency-key expiry on their own time. With
    `tls` it serves HTTPS with mutual TLS (`gateway.tls`)."""

    def __init__(
        self,
        db_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        key_dir: Path | None = None,
        *,
        clock: Callable[[], datetime] = now,
        expire_every_s: float = EXPIRE_EVERY_S,
        tls: ServerTLS | None = None,
    ) -> None:
        self.tls = tls
        self.engine = open_engine(f"sqlite:///{db_path}")
        self.ledger = Ledger(self.engine, clock)
        self.processor = SimulatedProcessor()
        self.vault = CardVault.from_key_dirs(key_dir) if key_dir is not None else None
        self.expiry = KeyExpiry(self.ledger, expire_every_s)
        self.app = create_app(self.ledger, self.processor, self.vault, expiry=self.expiry)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def up(self) -> None:
        if self._server is not None:
            return
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=5,
            **(uvicorn_options(self.tls) if self.tls else {}),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("embedded gateway did not start")
            time.sleep(0.005)
        self._server, self._thread = server, thread

    def down(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)

    def close(self) -> None:
        self.down()
        self.engine.dispose()


def serve(
    db_path: Path, host: str, port: int, key_dir: Path | None = None, tls: ServerTLS | None = None
) -> None:
    """Run the gateway in the foreground until interrupted (HTTPS with mutual TLS if `tls`)."""
    engine = open_engine(f"sqlite:///{db_path}")
    vault = CardVault.from_key_dirs(key_dir) if key_dir is not None else None
    app = create_app(Ledger(engine), SimulatedProcessor(), vault)
    options = uvicorn_options(tls) if tls else {}
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", **options))
    server.run(sockets=[listen(host, port)])
