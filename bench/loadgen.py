"""The load generator of `bench_gateway`, run as a process of its own so that its work is not
counted inside the server under test (it still shares the machine's cores with it).

    python -m bench.loadgen closed --url http://127.0.0.1:P --money 500 --concurrency 16
    python -m bench.loadgen open --url http://127.0.0.1:P --rate 300 --seconds 5

`closed`: `--concurrency` connections, each sending kiosk money requests back to back (an
authorization, then its capture, each with its own Idempotency-Key) until `--money` have been
sent or `--deadline` seconds have passed. `open`: authorizations at a fixed offered rate,
each sent at its scheduled instant whatever the previous ones are doing (open loop); its
latency counts from that instant, so a server that falls behind is not hidden by a generator
that waits for it (coordinated omission). One JSON line on stdout holds the figures.

The client is a minimal HTTP/1.1 one over asyncio streams (keep-alive, Content-Length
bodies, as uvicorn answers): a general client costs more CPU per request than the
server's cheapest endpoint, and on two cores that would be measured instead of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TERMINAL_ID = "KIOSK-0001"
MINOR = 5000


def authorization(auth_id: str) -> bytes:
    """An authorization the simulated processor approves (last4 0010, no fleet keys needed
    with --insecure-dev); shaped like the kiosk's (tests/gateway/test_idempotency.py)."""
    return json.dumps(
        {
            "authorization_id": auth_id,
            "terminal_id": TERMINAL_ID,
            "amount": {"minor": MINOR, "currency": "EUR"},
            "card": {
                "kind": "payment",
                "token": "tok-0123456789abcdef",
                "brand": "Visa",
                "last4": "0010",
                "expiry": "4912",
                "payload": {"ciphertext": "AAAA"},
            },
        }
    ).encode()


def capture(receipt_id: str, minor: int = MINOR) -> bytes:
    """A capture with its receipt, as the kiosk sends it at the end of a session."""
    return json.dumps(
        {
            "amount": {"minor": minor, "currency": "EUR"},
            "energy_wh": 8250,
            "receipt": {
                "receipt_id": receipt_id,
                "station": "Example Street 1",
                "tariff": "Standard AC",
                "card": "Visa **** 0010",
                "started_at": "2026-01-15T09:00:00+00:00",
                "ended_at": "2026-01-15T09:45:00+00:00",
                "energy_wh": 8250,
                "currency": "EUR",
                "lines": [
                    {
                        "dimension": "ENERGY",
                        "quantity": "8.25",
                        "unit": "kWh",
                        "excl_vat": minor,
                        "vat_percent": "0",
                    }
                ],
                "vat": [{"percent": "0", "base": minor, "vat": 0}],
                "total_excl_vat": minor,
                "total": minor,
            },
        }
    ).encode()


class HttpError(Exception):
    """The server closed the connection or answered something this client cannot read."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, key: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Idempotency-Key: {key}\r\n\r\n"
        ).encode()
        try:
            self.writer.write(head + body)
            status_line = await self.reader.readline()
            if not status_line:
                raise HttpError("connection closed by the server")
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await self.reader.readexactly(length)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    """Latencies in seconds and what went wrong (the first few answers kept to show)."""

    money: list[float] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 3:
            self.first_errors.append(what[:300])


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), in the samples' unit; NaN when there are none."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _money(conn: Connection, tag: str, n: int, tally: Tally | None) -> None:
    """One kiosk money request: authorize, then capture it. `tally` None: a warm-up one."""
    auth_id = f"{tag}-{n:08d}"
    started = time.perf_counter()
    try:
        status, answer = await conn.post(
            "/v1/authorizations", f"{auth_id}:authorize", authorization(auth_id)
        )
        authorized = time.perf_counter()
        if status not in (200, 201):
            raise HttpError(f"authorize {status}: {answer.decode(errors='replace')}")
        status, answer = await conn.post(
            f"/v1/authorizations/{auth_id}/capture",
            f"{auth_id}:capture",
            capture(f"R{tag.upper()}{n:08d}"),
        )
        if status not in (200, 201):
            raise HttpError(f"capture {status}: {answer.decode(errors='replace')}")
    except HttpError as exc:
        if tally is not None:
            tally.error(str(exc))
        return
    done = time.perf_counter()
    if tally is not None:
        tally.money.append(done - started)
        tally.requests += [authorized - started, done - authorized]


async def closed_loop(
    url: str, tag: str, money: int, *, concurrency: int, warmup: int, deadline_s: float
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conns = [Connection(host, port) for _ in range(concurrency)]
    counter = iter(range(warmup + money))
    for i in range(warmup):  # unrecorded: connections opened, first-request paths warm
        await _money(conns[i % concurrency], tag, next(counter), None)
    tally = Tally()
    stop_at = time.perf_counter() + deadline_s

    async def worker(conn: Connection) -> None:
        for n in counter:
            if time.perf_counter() > stop_at:
                return
            await _money(conn, tag, n, tally)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return _summary(tally, elapsed, money)


async def open_loop(
    url: str, tag: str, rate: float, seconds: float, grace_s: float
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: list[Connection] = []
    tally = Tally()
    # Warm the connections and the server's first-request paths before the clock starts.
    for i in range(20):
        conn = Connection(host, port)
        await _money(conn, f"{tag}w", i, None)
        idle.append(conn)

    async def one(n: int, scheduled: float) -> None:
        reused = bool(idle)
        conn = idle.pop() if reused else Connection(host, port)
        auth_id = f"{tag}-{n:08d}"
        key, body = f"{auth_id}:authorize", authorization(auth_id)
        try:
            try:
                status, answer = await conn.post("/v1/authorizations", key, body)
            except HttpError:
                if not reused:
                    raise
                # A kept-alive connection the server closed while it sat idle (uvicorn closes
                # them after 5 s): sent again on a new one, as HTTP clients do; the same
                # Idempotency-Key makes that safe.
                conn = Connection(host, port)
                status, answer = await conn.post("/v1/authorizations", key, body)
            if status not in (200, 201):
                tally.error(f"authorize {status}: {answer.decode(errors='replace')}")
                return
        except HttpError as exc:
            tally.error(str(exc))
            return
        tally.requests.append(time.perf_counter() - scheduled)
        idle.append(conn)

    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    lags: list[float] = []
    for n in range(total):
        scheduled = started + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - scheduled)
        tasks.append(asyncio.create_task(one(n, scheduled)))
    sent = time.perf_counter() - started
    _, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
    elapsed = time.perf_counter() - started
    for task in pending:  # not answered in time: late by at least this much, not dropped
        task.cancel()
    for n, task in enumerate(tasks):
        if task in pending:
            tally.requests.append(elapsed - n / rate)
    await asyncio.gather(*pending, return_exceptions=True)
    for conn in idle:
        conn.close()
    summary = _summary(tally, elapsed, total)
    summary["offered_per_s"] = total / sent if sent > 0 else float("nan")
    summary["unanswered"] = len(pending)
    summary["requests"] -= len(pending)
    # The generator's own CPU over the run, as a share of one core: well below 1 means it
    # kept its schedule without being the bottleneck (it has one thread).
    summary["client_core_share"] = (time.process_time() - cpu_started) / elapsed
    # How late requests left against their schedule (the generator's own delay; the
    # latencies above count from the schedule, so this is in them, not hidden).
    summary["send_lag_p99_ms"] = percentile([lag * 1000 for lag in lags], 99)
    return summary


def _summary(tally: Tally, elapsed: float, asked: int) -> dict[str, Any]:
    ms = [s * 1000 for s in tally.requests]
    return {
        "asked": asked,
        "money": len(tally.money),
        "requests": len(tally.requests),
        "errors": tally.errors,
        "first_errors": tally.first_errors,
        "elapsed_s": elapsed,
        "money_per_s": len(tally.money) / elapsed if elapsed > 0 else float("nan"),
        "requests_per_s": len(tally.requests) / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
        "money_p99_ms": percentile([s * 1000 for s in tally.money], 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tag", default="bench", help="prefix of authorization ids (unique)")
    parser.add_argument("--money", type=int, default=500, help="closed: money requests")
    parser.add_argument("--concurrency", type=int, default=16, help="closed: connections")
    parser.add_argument("--warmup", type=int, default=20, help="closed: unrecorded first ones")
    parser.add_argument("--deadline", type=float, default=60.0, help="closed: stop after (s)")
    parser.add_argument("--rate", type=float, default=300.0, help="open: authorizations/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="open: how long")
    parser.add_argument(
        "--grace", type=float, default=10.0, help="open: wait this long (s) for the last answers"
    )
    args = parser.parse_args(argv)
    if args.mode == "closed":
        result = asyncio.run(
            closed_loop(
                args.url,
                args.tag,
                args.money,
                concurrency=args.concurrency,
                warmup=args.warmup,
                deadline_s=args.deadline,
            )
        )
    else:
        result = asyncio.run(open_loop(args.url, args.tag, args.rate, args.seconds, args.grace))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
