"""Money requests per second and p99 latency through the gateway's full idempotent path.

    python -m bench gateway                   # the short run, as `make bench` does (--quick)
    python -m bench gateway --full            # the longer one (more requests a run)
    python -m bench.bench_gateway --backends sqlite --workers 1 --money 300

The real gateway (`ev-terminal gateway --insecure-dev --workers N`, a subprocess) on SQLite
(a migrated file) and on PostgreSQL (`tests/postgres.py`'s server, migrated by `ev-terminal
gateway migrate`), with 1, 2 and 4 workers. Load comes from a separate process
(`bench/loadgen.py`): a money request is the kiosk's pair, an authorization then its capture,
each with its own Idempotency-Key, sent back to back over `--concurrency` connections
(closed loop). In the same run, on the same database, under the same load: the floor
(`bench/floor_app.py`), a bare ASGI app on the same uvicorn and engine settings doing one
INSERT and COMMIT per request. Printed: money requests/s, HTTP requests/s, p50/p99 of one
HTTP request, the server's CPU milliseconds per money request (its own processes, warm-up
included; a figure that depends little on the machine's load), on PostgreSQL the database
server's own CPU milliseconds per money request (on two cores it counts as much as the
gateway's), and the ratio full path / floor. With `--rounds N` (3 with `--full`) each path
runs N times, the two taking turns to go first, and the ratio is of the median runs (the
open loop below runs N times too, its median p99 is the one held to the target): on a
shared machine one short run of either can land on a busy second (a floor run on the same
quiet machine measured 398/s at 2 workers and 862/s at 4 in one bench). Then, for the
same back-end and worker count, p99 at a fixed offered rate of 300 authorizations/s (open
loop, latency counted from each request's scheduled instant, on a gateway started afresh
on the same database). A summary table ends the run: one line per back-end and worker
count with both rates, their ratio, the p99 at 300/s and the server CPU per money request
of both paths (and the database server's).

Targets (2 cores shared with the load generator): the full path at least half the floor's
throughput; p99 under 25 ms at 300 authorizations/s. The exit status is 1 when a target is
missed or a request failed. The figures are wall-clock on whatever else the machine is
running: the load average is printed first so they can be read against it.

The PostgreSQL server is the test suite's: fsync and synchronous_commit are off, so its
figures are an upper bound of what a durable PostgreSQL does on this machine. SQLite is at
the gateway's own settings (WAL, synchronous=FULL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
RATIO_TARGET = 0.5
P99_TARGET_MS = 25.0
OPEN_RATE = 300.0
OPEN_GRACE_S = 10.0  # an authorization not answered by then counts as late by that much
WARMUP = 20  # unrecorded money requests before each closed-loop run


@dataclass(frozen=True)
class Plan:
    backends: tuple[str, ...]
    workers: tuple[int, ...]
    money: int
    concurrency: int
    deadline_s: float
    open_seconds: float
    rounds: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess in its own process group, stopped by SIGTERM (SIGKILL if stuck)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self.log = log
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:  # refused, or not answering yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{argv[:3]} did not start; see {log}:\n{log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Forked workers left behind by a supervisor that did not stop them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def gateway(db: str, workers: int, log: Path) -> Server:
    return Server(
        [
            str(BIN / "ev-terminal"),
            "gateway",
            "--db",
            db,
            "--insecure-dev",
            "--workers",
            str(workers),
        ],
        log,
    )


def floor(db: str, workers: int, log: Path) -> Server:
    return Server(
        [sys.executable, "-m", "bench.floor_app", "--db", db, "--workers", str(workers)], log
    )


def load(url: str, *args: str, timeout_s: float) -> dict[str, Any]:
    """Run the load generator in a process of its own and return its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", *args, "--url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def migrate(db: str) -> None:
    subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", "migrate", "--db", db],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def _stats() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after the command (field 3, state, is [0])."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
    return found


# Indexes into `_stats()`'s fields (proc(5): ppid is field 4, pgrp 5, utime 14, stime 15,
# cutime 16, cstime 17, 1-based, and the list starts at field 3).
_PPID, _PGRP, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 2, 11, 12, 13, 14


def server_cpu_s(server: Server) -> float:
    """CPU seconds (user + system) used so far by the server's processes (its process group:
    the supervisor and its forked workers). Unlike wall-clock rates, this hardly depends on
    what else the machine runs; the PostgreSQL server's own CPU is `database_cpu_s`."""
    total = sum(
        int(f[_UTIME]) + int(f[_STIME])
        for f in _stats().values()
        if int(f[_PGRP]) == server.proc.pid
    )
    return total / os.sysconf("SC_CLK_TCK")


def database_cpu_s(postmaster: int | None) -> float:
    """CPU seconds used so far by the PostgreSQL server: the postmaster, its live children
    (one backend per connection, the checkpointer, the WAL writer...) and the children it
    has reaped (a backend whose connection closed: its time is in the postmaster's cutime
    and cstime). 0 for SQLite (`postmaster` None), whose work is inside the gateway's."""
    if postmaster is None:
        return 0.0
    stats = _stats()
    own = stats.get(postmaster)
    if own is None:
        return 0.0
    total = sum(int(own[i]) for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
    total += sum(
        int(f[_UTIME]) + int(f[_STIME]) for f in stats.values() if int(f[_PPID]) == postmaster
    )
    return total / os.sysconf("SC_CLK_TCK")


def postmaster_pid(postgres: Any) -> int:
    """The PostgreSQL server's main process (the first line of its postmaster.pid: the
    process the tests start may be `runuser`, which runs it as a child)."""
    return int((postgres.data / "postmaster.pid").read_text().split()[0])


def closed(server: Server, tag: str, plan: Plan, postmaster: int | None) -> dict[str, Any]:
    try:
        before = server_cpu_s(server)
        db_before = database_cpu_s(postmaster)
        result = load(
            server.url,
            "closed",
            "--tag",
            tag,
            "--money",
            str(plan.money),
            "--concurrency",
            str(plan.concurrency),
            "--warmup",
            str(WARMUP),
            "--deadline",
            str(plan.deadline_s),
            timeout_s=plan.deadline_s + 60,
        )
        sent = result["money"] + result["errors"] + WARMUP
        result["cpu_ms"] = 1000 * (server_cpu_s(server) - before) / max(sent, 1)
        db_ms = 1000 * (database_cpu_s(postmaster) - db_before) / max(sent, 1)
        result["db_cpu_ms"] = db_ms if postmaster is not None else None
        return result
    finally:
        server.stop()


def _row(backend: str, workers: int, path: str, r: dict[str, Any]) -> str:
    cut = " (deadline)" if r["money"] + r["errors"] < r["asked"] else ""
    return (
        f"{backend:<10} {workers:>7} {path:<6} {r['money_per_s']:>9.1f} "
        f"{r['requests_per_s']:>8.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>8.1f} "
        f"{r['money']:>6} {r['errors']:>6} {r['cpu_ms']:>7.2f} {_ms(r['db_cpu_ms'], 7)}{cut}"
    )


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (the lower one of an even count): a run as it
    was, its CPU figures with it, not a blend of runs."""
    ranked = sorted(results, key=lambda r: float(r["money_per_s"]))
    return ranked[(len(ranked) - 1) // 2]


def _total(r: dict[str, Any]) -> float:
    """The server's and the database server's CPU per money request."""
    return float(r["cpu_ms"]) + float(r["db_cpu_ms"] or 0.0)


def _ms(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def _problems(what: str, r: dict[str, Any]) -> list[str]:
    return [f"{what}: {e}" for e in r["first_errors"]]


def open_loop(db: str, workers: int, tag: str, plan: Plan, log: Path) -> dict[str, Any]:
    """`OPEN_RATE` authorizations/s offered to a gateway just started on `db`."""
    server = gateway(db, workers, log)
    try:
        return load(
            server.url,
            "open",
            "--tag",
            tag,
            "--rate",
            str(OPEN_RATE),
            "--seconds",
            str(plan.open_seconds),
            "--grace",
            str(OPEN_GRACE_S),
            timeout_s=plan.open_seconds + OPEN_GRACE_S + 60,
        )
    finally:
        server.stop()


def _open_line(backend: str, workers: int, r: dict[str, Any]) -> str:
    verdict = "met" if r["p99_ms"] < P99_TARGET_MS else "NOT met"
    return (
        f"{'':<10} {'':>7} open loop: offered {r['offered_per_s']:.0f}/s, answered "
        f"{r['requests']} ({r['errors']} errors, {r['unanswered']} not answered within "
        f"{OPEN_GRACE_S:.0f} s) in {r['elapsed_s']:.1f} s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms (target p99 < "
        f"{P99_TARGET_MS:.0f} ms: {verdict}); load generator: {r['client_core_share']:.2f} "
        f"of a core, send lag p99 {r['send_lag_p99_ms']:.1f} ms"
    )


def run(plan: Plan, work: Path) -> int:
    load1, load5, _ = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min) {load5:.1f} (5 min);"
        " the load generator runs on the same cores"
    )
    print(
        f"closed loop: {plan.money} money requests (authorize + capture) per run over "
        f"{plan.concurrency} connections, at most {plan.deadline_s:.0f} s a run; open loop: "
        f"{OPEN_RATE:.0f} authorizations/s offered for {plan.open_seconds:.0f} s, latency "
        "from each one's scheduled instant"
    )
    header = (
        f"{'backend':<10} {'workers':>7} {'path':<6} {'money/s':>9} {'http/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>8} {'money':>6} {'errors':>6} {'cpu ms':>7} {'db ms':>7}"
    )
    print(header)
    print("-" * len(header))
    missed: list[str] = []
    problems: list[str] = []
    summary: list[str] = []
    postgres: Any = None
    try:
        for backend in plan.backends:
            for workers in plan.workers:
                postmaster: int | None = None
                if backend == "sqlite":
                    db = str(work / f"gateway-{workers}.sqlite3")
                else:
                    if postgres is None:
                        from tests.postgres import PostgresServer

                        postgres = PostgresServer()
                        postgres.start()
                    db = postgres.database()
                    postmaster = postmaster_pid(postgres)
                migrate(db)
                log = work / f"{backend}-{workers}.log"
                tag = f"{backend[0]}{workers}"
                runs: dict[str, list[dict[str, Any]]] = {"full": [], "floor": []}
                for n in range(plan.rounds):
                    # The two paths take turns first: neither always runs on the warmer
                    # database or the quieter minute.
                    order = ("full", "floor") if n % 2 == 0 else ("floor", "full")
                    for path in order:
                        start = gateway if path == "full" else floor
                        r = closed(
                            start(db, workers, log), f"{path[:2]}{tag}r{n}", plan, postmaster
                        )
                        print(_row(backend, workers, path, r), flush=True)
                        runs[path].append(r)
                full, base = _median(runs["full"]), _median(runs["floor"])
                ratio = full["money_per_s"] / base["money_per_s"]
                verdict = "met" if ratio >= RATIO_TARGET else "NOT met"
                if plan.rounds > 1:
                    each = ", ".join(
                        f"{f['money_per_s'] / b['money_per_s']:.2f}"
                        for f, b in zip(runs["full"], runs["floor"], strict=True)
                    )
                    print(
                        f"{'':<10} {'':>7} median of {plan.rounds} runs each: full "
                        f"{full['money_per_s']:.1f}/s, floor {base['money_per_s']:.1f}/s; "
                        f"ratio round by round {each}",
                        flush=True,
                    )
                print(
                    f"{'':<10} {'':>7} ratio full/floor {ratio:.2f} "
                    f"(target >= {RATIO_TARGET}: {verdict}); CPU per money request "
                    f"floor/full: server {base['cpu_ms'] / max(full['cpu_ms'], 1e-9):.2f}, "
                    f"server + database {_total(base) / max(_total(full), 1e-9):.2f}",
                    flush=True,
                )
                if ratio < RATIO_TARGET:
                    missed.append(f"{backend} {workers} worker(s): ratio {ratio:.2f}")
                opens = []
                for n in range(plan.rounds):
                    opens.append(open_loop(db, workers, f"O{tag}r{n}", plan, log))
                    print(_open_line(backend, workers, opens[-1]), flush=True)
                opened = sorted(opens, key=lambda r: float(r["p99_ms"]))[(len(opens) - 1) // 2]
                if plan.rounds > 1:
                    print(
                        f"{'':<10} {'':>7} open loop, median of {plan.rounds} runs: p99 "
                        f"{opened['p99_ms']:.1f} ms (target p99 < {P99_TARGET_MS:.0f} ms)",
                        flush=True,
                    )
                if opened["p99_ms"] >= P99_TARGET_MS or opened["p99_ms"] != opened["p99_ms"]:
                    missed.append(f"{backend} {workers} worker(s): p99 {opened['p99_ms']:.1f} ms")
                for path, done in runs.items():
                    for r in done:
                        problems += _problems(f"{backend} {workers} {path}", r)
                for r in opens:
                    problems += _problems(f"{backend} {workers} open loop", r)
                summary.append(
                    f"{backend:<10} {workers:>7} {full['money_per_s']:>9.1f} "
                    f"{base['money_per_s']:>9.1f} {ratio:>6.2f} {opened['p99_ms']:>11.1f} "
                    f"{full['cpu_ms']:>9.2f} {base['cpu_ms']:>10.2f} "
                    f"{_ms(full['db_cpu_ms'], 8)} {_ms(base['db_cpu_ms'], 9)}"
                )
    finally:
        if postgres is not None:
            postgres.stop()
    load1, load5, _ = os.getloadavg()
    print()
    print(
        f"summary (money/s: closed loop; p99 at {OPEN_RATE:.0f}/s: open loop; cpu: server CPU "
        "ms per money request; db: the PostgreSQL server's CPU ms per money request)"
    )
    head = (
        f"{'backend':<10} {'workers':>7} {'full/s':>9} {'floor/s':>9} {'ratio':>6} "
        f"{'p99@300 ms':>11} {'cpu full':>9} {'cpu floor':>10} {'db full':>8} {'db floor':>9}"
    )
    print(head)
    print("-" * len(head))
    for line in summary:
        print(line)
    print(f"load average at the end: {load1:.1f} (1 min) {load5:.1f} (5 min)")
    for line in problems:
        print(f"!! {line}")
    if missed:
        print("targets NOT met: " + "; ".join(missed))
    else:
        print("targets met")
    return 1 if missed or problems else 0


def _positive(text: str) -> int:
    """A whole number of at least 1 (argparse names the option in its error line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--quick", action="store_true", help="a short run, the default (a few minutes at most)"
    )
    length.add_argument("--full", action="store_true", help="more requests a run")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--money", type=int, help="money requests per closed-loop run")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--open-seconds", type=float, help="length of the open-loop runs")
    parser.add_argument(
        "--rounds",
        type=_positive,
        help="closed-loop runs of each path, taking turns (default 3 with --full, else 1); "
        "the ratio is of their medians",
    )
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}")
    plan = Plan(
        backends=backends,
        workers=tuple(int(w) for w in args.workers.split(",")),
        money=args.money or (1000 if args.full else 150),
        concurrency=args.concurrency,
        deadline_s=60.0 if args.full else 10.0,
        open_seconds=args.open_seconds or (10.0 if args.full else 3.0),
        rounds=args.rounds or (3 if args.full else 1),
    )
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        return run(plan, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
