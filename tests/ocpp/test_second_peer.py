"""A second, independent OCPP 2.1 peer for the core messages: a CSMS on ocpp-rpc 2.2.1
(mikuso/ocpp-rpc on npm, Node), in strict mode with its own copy of the OCPP 2.1 schemas.
The kiosk boots, reports its status, a whole card session and its settlement, and answers
the peer's GetVariables; the peer refuses anything its schemas do not allow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest

from launcher.simulate import Simulation
from terminal.config import Config, OcppConfig
from tests.ocpp.harness import PASSWORD, password_file, run

ROOT = Path(__file__).resolve().parent.parent.parent
PEER = Path(__file__).resolve().parent / "peer"
MODULES = ROOT / ".venv" / "peers" / "ocpp-rpc"


def _install() -> Path:
    """ocpp-rpc from npm into the venv (once), at the version package.json pins."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the ocpp-rpc peer (Debian: nodejs npm)")
    if not (MODULES / "node_modules" / "ocpp-rpc").exists():
        MODULES.mkdir(parents=True, exist_ok=True)
        shutil.copy(PEER / "package.json", MODULES / "package.json")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=MODULES,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return MODULES / "node_modules"


class Peer:
    def __init__(self, stdout: IO[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self.port = 0
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()
        assert self._ready.wait(30), "the ocpp-rpc peer did not start"

    def _read(self, stdout: IO[str]) -> None:
        for raw in stdout:
            line = json.loads(raw)
            if "listening" in line:
                self.port = int(line["listening"])
                self._ready.set()
                continue
            with self._lock:
                self.lines.append(line)

    def received(self, action: str) -> list[dict[str, Any]]:
        with self._lock:
            return [line["payload"] for line in self.lines if line.get("action") == action]

    def unexpected(self) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self.lines if line.get("unhandled")]


@pytest.fixture
def peer(config: Config) -> Iterator[Peer]:
    modules = _install()
    with subprocess.Popen(
        ["node", str(PEER / "csms.js"), config.station.id, PASSWORD],
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            yield Peer(process.stdout)
        finally:
            process.kill()


def test_core_messages_with_an_independent_csms(config: Config, peer: Peer, tmp_path: Path) -> None:
    ocpp = OcppConfig(
        url=f"ws://127.0.0.1:{peer.port}/ocpp",
        station_id=config.station.id,
        password_file=password_file(tmp_path),
    )
    sim = Simulation(config=replace(config, ocpp=ocpp), data_dir=tmp_path / "kiosk")
    try:
        assert sim.ocpp is not None and sim.ocpp.wait_online(10)
        run(sim, "tap visa\nplug\nev charge\nwait 10m\ntap visa\nwait 1m\n")
        assert sim.ocpp_drained()
        captured = sim.results()[0]["amount_captured"]
        # Every message was accepted: the queue is empty and nothing was set aside.
        assert all(m["state"] == "done" for m in sim.ocpp.queue.messages())
    finally:
        sim.close()
    assert len(peer.received("BootNotification")) == 1
    assert peer.received("StatusNotification")
    assert [e["type"] for e in peer.received("SecurityEventNotification")] == ["StartupOfTheDevice"]
    events = peer.received("TransactionEvent")
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert [events[0]["eventType"], events[-1]["eventType"]] == ["Started", "Ended"]
    [settlement] = peer.received("NotifySettlement")
    assert round(settlement["settlementAmount"] * 100) == captured
    [answer] = peer.received("GetVariables.answer")
    assert answer["getVariableResult"][0]["attributeValue"] == "EUR"
    assert peer.unexpected() == []
