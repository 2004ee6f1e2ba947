"""`ev-terminal csms` and `ev-terminal simulate --csms URL`, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-m", "launcher.cli"]


def _listening(stdout: IO[str]) -> str:
    for line in stdout:
        if line.startswith("csms listening on "):
            return line.split()[3].removesuffix("/<station")
    raise AssertionError("the CSMS did not say where it listens")


def _simulate(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "session.txt"
    script.write_text("tap visa\nplug\nev charge\nwait 10m\ntap visa\nwait 1m\n")
    return subprocess.run(
        [*CLI, "simulate", "--script", str(script), "--json", "--csms", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.slow
def test_simulate_reports_its_sessions_to_the_reference_csms(tmp_path: Path) -> None:
    log = tmp_path / "csms.jsonl"
    with subprocess.Popen(
        [*CLI, "csms", "--port", "0", "--log", str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as csms:
        assert csms.stdout is not None
        try:
            url = _listening(csms.stdout)
            done = _simulate(tmp_path, url)
        finally:
            csms.kill()
    [result] = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]

    received = [json.loads(x) for x in log.read_text().splitlines()]
    events = [r["payload"] for r in received if r["action"] == "TransactionEvent"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1]["eventType"] == "Ended"
    [settlement] = [r["payload"] for r in received if r["action"] == "NotifySettlement"]
    assert round(settlement["settlementAmount"] * 100) == result["amount_captured"]


def test_simulate_refuses_a_csms_url_that_is_not_a_websocket(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("tap visa\n")
    done = subprocess.run(
        [*CLI, "simulate", "--script", str(script), "--csms", "http://127.0.0.1:1"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--csms: must be a ws:// or wss:// URL" in done.stderr
