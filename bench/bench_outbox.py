"""Outbox figures: enqueue rate with synchronous=FULL, drain rate of 10,000 queued events to a
local gateway (batched, 100 a request), and peak memory (VmHWM) while 1k, 10k and 100k records
wait for an unreachable gateway. Targets: 10,000 drained in under 10 s; memory flat in length.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hardware.clock import ManualClock
from terminal.shell.gateway_client import GatewayClient
from terminal.shell.journal import Journal
from terminal.shell.sender import Sender

AT = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def _event(journal: Journal, n: int) -> None:
    key = f"KIOSK-0001:event:{n:08d}"
    journal.enqueue(
        lane="events",
        kind="events",
        idem_key=key,
        path="/v1/events",
        body={
            "terminal_id": "KIOSK-0001",
            "event": {"key": key, "kind": "status", "detail": f"n={n}", "at": AT.isoformat()},
        },
        at=AT,
    )


def _capture(journal: Journal, n: int) -> None:
    sid = f"bench-{n:08d}"
    journal.enqueue(
        lane=sid,
        kind="capture",
        idem_key=f"{sid}:capture",
        path=f"/v1/authorizations/{sid}/capture",
        body={"amount": {"minor": 321, "currency": "EUR"}, "energy_wh": 8250},
        at=AT,
    )


def enqueue_rate(work: Path, n: int = 2_000) -> None:
    journal = Journal(work / "enqueue.sqlite3")
    t0 = time.perf_counter()
    for i in range(n):
        _event(journal, i)  # one transaction (one fsync) each, as a step's writes are
    per_commit = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with journal.atomic():
        for i in range(n, 11 * n):
            _event(journal, i)
    batched = 10 * n / (time.perf_counter() - t0)
    journal.close()
    print(
        f"enqueue, synchronous=FULL: {per_commit:,.0f} rows/s one commit each, "
        f"{batched:,.0f} rows/s in one transaction"
    )


def drain_rate(work: Path, n: int = 10_000) -> None:
    from gateway.server import EmbeddedGateway

    gateway = EmbeddedGateway(work / "gateway.sqlite3")
    gateway.up()
    journal = Journal(work / "drain.sqlite3")
    with journal.atomic():
        for i in range(n):
            _event(journal, i)
    sender = Sender(journal, GatewayClient(gateway.url, 10_000), ManualClock(), lambda e: None)
    t0 = time.perf_counter()
    rounds = 0
    while journal.queue_stats()[0]:
        sender.drain_once()
        rounds += 1
    elapsed = time.perf_counter() - t0
    with gateway.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one()
    journal.close()
    gateway.close()
    print(
        f"drain: {n:,} events in {elapsed:.2f} s ({n / elapsed:,.0f}/s, {rounds} requests), "
        f"{stored:,} stored at the gateway (target: under 10 s)"
        + ("" if stored == n else f"  -- {n - stored:,} MISSING: the drain figure is not valid")
    )


def _vmhwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def waiting_memory(n: int) -> None:
    """Child process: `n` captures wait; the sender tries an unreachable gateway."""
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "wait.sqlite3")
        with journal.atomic():
            for i in range(n):
                _capture(journal, i)
        clock = ManualClock()
        sender = Sender(journal, GatewayClient("http://127.0.0.1:9", 200), clock, lambda e: None)
        for _ in range(5):
            sender.drain_safely()
            journal.queue_stats()
            clock.advance(600_000)
        depth, _ = journal.queue_stats()
        journal.close()
        print(f"{depth} {_vmhwm_kib()}")


def memory(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> None:
    figures = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_outbox", "--wait", str(n)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        figures.append(f"{int(out[0]):,} waiting: VmHWM {int(out[1]) / 1024:.1f} MiB")
    print("memory while records wait: " + "; ".join(figures))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--wait":
        waiting_memory(int(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        enqueue_rate(work)
        drain_rate(work)
    memory()


if __name__ == "__main__":
    main()
