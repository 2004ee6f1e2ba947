"""Run the gateway: as its own service (`ev-terminal gateway`) or embedded in a thread on
127.0.0.1 for the demo, the scripted simulator and tests."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.ledger import Ledger, open_engine
from gateway.processors.simulated import SimulatedProcessor

START_TIMEOUT_S = 10.0


class EmbeddedGateway:
    """The reference gateway with the simulated processor, on a loopback port in a thread.

    `down()` stops listening (connections are refused, like a lost link) and `up()` listens
    again on the same port with the same ledger."""

    def __init__(self, db_path: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = open_engine(f"sqlite:///{db_path}")
        self.ledger = Ledger(self.engine)
        self.processor = SimulatedProcessor()
        self.app = create_app(self.ledger, self.processor)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def up(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_keep_alive=5
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


def serve(db_path: Path, host: str, port: int) -> None:
    """Run the gateway in the foreground until interrupted."""
    engine = open_engine(f"sqlite:///{db_path}")
    app = create_app(Ledger(engine), SimulatedProcessor())
    uvicorn.run(app, host=host, port=port, log_level="info")
