"""The console's revenue and fleet pages and the driver's history page on a year of a large
fleet.

Target (issue 13): on PostgreSQL with a generated year of sessions for 1,000 stations (about
10 million sessions), the revenue page's queries and the driver's history page answer with a
p95 under 100 ms.

What it does: starts a PostgreSQL server of its own in a temporary directory (Debian's
binaries, as the tests do; removed at the end), migrates it, and writes a year of sessions
with COPY: authorizations (captured, a few voided, those of the year's last 40 minutes still
open holds), their hold and capture movements, refunds for about 1 in 100, two signed readings
per session, drivers with their linked cards, stations in sites, each terminal's newest status
and kept health, and the revenue rollup summed in SQL from the same rows (what the money steps
keep capture by capture; the bench checks that its month totals equal the movements'). Then it
times the functions the pages call:
- revenue: `gateway.ledger.revenue.revenue` (totals and every breakdown: site, station,
  processor, method, brand, and the chart) for today, this week, this month and a 90-day and
  a 366-day range, in Europe/Berlin and Asia/Kathmandu (whose period edges are read from the
  movements), at random days of the year;
- history: what `/account` runs for a random driver: the filtered history and the unfiltered
  one (its station list), and a filter by station and by a month;
- fleet: what `/console/fleet` runs: `console_views.fleet` (every terminal) and
  `console_views.active_sessions` (the open holds with their energy so far).

`python -m bench.bench_portal --sessions 1000000` runs a smaller fleet-year. A 10-million
generation takes half an hour: `--keep DIR --generate-only` keeps it (about 10 GB), and
`--reuse DIR` times it again (after migrating it to the code being timed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from gateway.ledger import migrate, open_engine
from gateway.ledger.console_views import active_sessions, fleet
from gateway.ledger.drivers import Drivers
from gateway.ledger.revenue import revenue

TARGET_MS = 100.0
YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)
DAYS = 365
CURRENCIES = [("EUR", 19, 0.8), ("GBP", 20, 0.1), ("SEK", 25, 0.1)]  # per station
BRANDS = ["Visa", "Mastercard", "Girocard", "Amex"]
PROCESSORS = [("simulated", "sim-main"), ("stripe", "acct_1"), ("adyen", "EVMerchant")]
CARDS_PER_SESSION = 30  # a year of sessions / this = distinct cards and tokens
ZONES = ("Europe/Berlin", "Asia/Kathmandu")
RUNS = 40  # timed calls per case
KEPT = "bench_portal.json"  # what --keep writes beside the server's files


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, rows: Iterator[str]) -> None:
    """COPY tab-separated lines into `table`, in chunks of about a megabyte."""
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buf = io.StringIO()
        for line in rows:
            buf.write(line)
            if buf.tell() > 1 << 20:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def _indexes(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[str]:
    """Drop the secondary indexes and unique constraints of `tables` (COPY into bare tables
    is several times faster); the statements that make them again."""
    again: list[str] = []
    for table in tables:
        for name, definition in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        ).fetchall():
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            again.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in conn.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary",
            (table,),
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
            again.append(definition)
    return again


def generate(dsn: str, sessions: int, stations: int, seed: int) -> dict[str, Any]:
    """Write the fleet-year; what the timing needs to pick from."""
    rng = random.Random(seed)
    terminals = [f"T{n:05d}" for n in range(stations)]
    currency_of = {
        t: rng.choices([c for c, _, _ in CURRENCIES], [w for _, _, w in CURRENCIES])[0]
        for t in terminals
    }
    vat_of = {c: v for c, v, _ in CURRENCIES}
    cards = max(1, sessions // CARDS_PER_SESSION)
    tokens = [f"tok{n:08d}" for n in range(cards)]
    started = time.monotonic()
    # Two connections: the authorizations stream through one COPY while their movements
    # are flushed through the other.
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        psycopg.connect(dsn, autocommit=True) as side,
    ):
        conn.execute("SET TimeZone = 'UTC'")
        side.execute("SET TimeZone = 'UTC'")
        again = _indexes(conn, ("authorizations", "movements", "meter_readings"))
        # The bench writes the rollup itself (from `bench_revenue`, below), so the movements
        # it generates are recorded as rolled up already (`movements.rolled`).
        conn.execute("ALTER TABLE movements ALTER COLUMN rolled SET DEFAULT true")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_revenue (at timestamptz, kind text, amount bigint, "
            "vat bigint, currency text, terminal text, processor text, method text, brand text)"
        )
        _copy(
            conn,
            "stations",
            "terminal_id, site, name",
            (f"{t}\tSite {n // 10:03d}\tStation {n:05d}\n" for n, t in enumerate(terminals)),
        )
        step = timedelta(days=DAYS) / sessions
        auth_cols = (
            "id, terminal_id, status, currency, amount_requested, amount_authorized, "
            "amount_captured, amount_refunded, card_kind, card_token, card_brand, card_last4, "
            "processor, merchant_account, processor_ref, energy_wh, receipt_id, receipt, "
            "created_at, updated_at"
        )
        moves: list[str] = []
        revenue_rows: list[str] = []
        readings: list[str] = []
        open_from = YEAR_START + timedelta(days=DAYS) - timedelta(minutes=40)

        def authorizations() -> Iterator[str]:
            for n in range(sessions):
                at = YEAR_START + step * n
                stamp = at.isoformat()
                aid = f"s{n:09d}"
                terminal = terminals[rng.randrange(stations)]
                currency = currency_of[terminal]
                # Zipf-like: a few fleet cards charge very often, most cards now and then.
                pick = (
                    min(int(rng.paretovariate(1.2)) - 1, cards - 1)
                    if n % 3 == 0
                    else rng.randrange(cards)
                )
                card = tokens[pick]
                kind = "id_token" if card[-1] == "7" else "payment"
                brand = "" if kind == "id_token" else BRANDS[pick % len(BRANDS)]
                processor, account = PROCESSORS[n % len(PROCESSORS)]
                held = 5000
                voided = n % 40 == 0
                held_now = at >= open_from  # a session still under way at the year's end
                captured = 0 if voided or held_now else rng.randrange(150, 5000)
                vat = captured - (captured * 100 + (100 + vat_of[currency]) // 2) // (
                    100 + vat_of[currency]
                )
                refunded = captured // 2 if n % 100 == 1 else 0
                moves.append(f"{aid}\thold\t{held}\t{currency}\thold:{aid}\t{stamp}\n")
                ends = (
                    () if held_now else (("end", 1000 + captured * 3, at + timedelta(minutes=40)),)
                )
                for kind_of, rv, when in (("begin", 1000, at), *ends):
                    readings.append(
                        f"{aid}\t{terminal}\t{kind_of}\t"
                        f'OCMF|{{"GS":"{terminal}","RD":[{{"TX":"B","RV":{rv / 1000},'
                        f'"RU":"kWh"}}]}}|{{"SD":"3045"}}\t{kind_of}:{aid}\t{when.isoformat()}\n'
                    )
                if held_now:
                    status, receipt_id, receipt = "approved", "\\N", "\\N"
                elif voided:
                    moves.append(f"{aid}\trelease\t{held}\t{currency}\trelease:{aid}\t{stamp}\n")
                    status, receipt_id, receipt = "voided", "\\N", "\\N"
                else:
                    end = (at + timedelta(minutes=40)).isoformat()
                    moves.append(f"{aid}\tcapture\t{captured}\t{currency}\tcapture:{aid}\t{end}\n")
                    revenue_rows.append(
                        f"{end}\tcapture\t{captured}\t{vat}\t{currency}\t{terminal}\t"
                        f"{processor}\t{kind}\t{brand}\n"
                    )
                    status, receipt_id = "captured", f"R{n:09d}"
                    receipt = f'{{"total": {captured}, "total_excl_vat": {captured - vat}}}'
                    if refunded:
                        later = (at + timedelta(days=2)).isoformat()
                        moves.append(
                            f"{aid}\trefund\t{refunded}\t{currency}\trefund:{aid}\t{later}\n"
                        )
                        revenue_rows.append(
                            f"{later}\trefund\t{refunded}\t0\t{currency}\t{terminal}\t"
                            f"{processor}\t{kind}\t{brand}\n"
                        )
                yield (
                    f"{aid}\t{terminal}\t{status}\t{currency}\t{held}\t{held}\t"
                    f"{captured if status == 'captured' else chr(92) + 'N'}\t{refunded}\t"
                    f"{kind}\t{card}\t{brand}\t{card[-4:] if kind == 'payment' else ''}\t"
                    f"{processor}\t{account}\t"
                    f"ref-{aid}\t{captured * 3}\t{receipt_id}\t{receipt}\t{stamp}\t{stamp}\n"
                )
                if len(moves) > 200_000:
                    _flush(side, moves, revenue_rows, readings)

        _copy(conn, "authorizations", auth_cols, authorizations())
        _flush(side, moves, revenue_rows, readings)
        # Each terminal's heartbeat and kept health as of the year's end (`terminal_status`,
        # `terminal_health`): what a fleet reporting every 2 minutes leaves.
        last = (YEAR_START + timedelta(days=DAYS)).isoformat()
        heartbeat = json.dumps({"software_version": "1.0.0", "queue_depth": 0, "sessions": []})
        _copy(
            conn,
            "terminal_status",
            "terminal_id, status, received_at",
            (f"{t}\t{heartbeat}\t{last}\n" for t in terminals),
        )
        _copy(
            conn,
            "terminal_health",
            "terminal_id, out_of_service, last_event_at",
            (f"{t}\tfalse\t{last}\n" for t in terminals),
        )
        conn.execute("ALTER TABLE movements ALTER COLUMN rolled SET DEFAULT false")
        print(f"  rows written in {time.monotonic() - started:.0f} s", flush=True)
        for statement in again:
            conn.execute(statement)
        print(f"  indexes made at {time.monotonic() - started:.0f} s", flush=True)
        drivers = max(1, cards // 2)
        _copy(
            conn,
            "drivers",
            "id, email, created_at",
            (f"{d + 1}\td{d}@example.org\t{YEAR_START.isoformat()}\n" for d in range(drivers)),
        )
        conn.execute("SELECT setval('drivers_id_seq', %s)", (drivers,))
        _copy(
            conn,
            "driver_cards",
            "card_token, driver_id, kind, created_at",
            (
                f"{t}\t{n % drivers + 1}\t{'id_token' if t[-1] == '7' else 'payment'}\t"
                f"{YEAR_START.isoformat()}\n"
                for n, t in enumerate(tokens)
            ),
        )
        for grain, truncated in (
            ("q", "date_bin('15 minutes', at, TIMESTAMPTZ '2000-01-01')"),
            ("h", "date_trunc('hour', at)"),
            ("d", "date_trunc('day', at)"),
            ("w", "date_trunc('week', at)"),  # ISO weeks, from Monday
            ("m", "date_trunc('month', at)"),
        ):
            for dimension, column in (
                ("all", "''"),
                ("terminal", "terminal"),
                ("processor", "processor"),
                ("method", "method"),
                ("brand", "brand"),
            ):
                conn.execute(
                    "INSERT INTO revenue_rollup (grain, dimension, bucket, key, currency, "
                    "captures, gross, vat, refunds) "
                    f"SELECT '{grain}', '{dimension}', {truncated}, {column}, "
                    "currency, count(*) FILTER (WHERE kind = 'capture'), "
                    "coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0), "
                    "coalesce(sum(vat), 0), "
                    "coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) "
                    f"FROM bench_revenue GROUP BY 3, 4, 5"
                )
        # bench_revenue stays: a kept database's rollup can be summed again from it in SQL.
        conn.execute("VACUUM ANALYZE")
        print(f"  rollup and analyze at {time.monotonic() - started:.0f} s", flush=True)
        check = conn.execute(
            "SELECT (SELECT sum(gross) FROM revenue_rollup WHERE grain = 'm' "
            "AND dimension = 'all'), (SELECT sum(amount) FROM movements WHERE kind = 'capture')"
        ).fetchone()
        assert check is not None and check[0] == check[1], check
        size = conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    return {
        "terminals": terminals,
        "drivers": drivers,
        "seconds": time.monotonic() - started,
        "size": size[0] if size else "?",
    }


def _flush(
    conn: psycopg.Connection[Any], moves: list[str], revenue_rows: list[str], readings: list[str]
) -> None:
    _copy(
        conn,
        "meter_readings",
        "authorization_id, terminal_id, kind, ocmf, ocmf_sha256, received_at",
        iter(readings),
    )
    _copy(
        conn,
        "movements",
        "authorization_id, kind, amount, currency, step_key, at",
        iter(moves),
    )
    _copy(
        conn,
        "bench_revenue",
        "at, kind, amount, vat, currency, terminal, processor, method, brand",
        iter(revenue_rows),
    )
    moves.clear()
    revenue_rows.clear()
    readings.clear()


def _period(name: str, zone: ZoneInfo, today: date) -> tuple[datetime, datetime, bool]:
    """[start, end) of the console's period `name` around `today` (as `gateway.web.periods`),
    and whether it is charted by the hour."""
    if name == "today":
        first, last = today, today
    elif name == "week":
        first = today - timedelta(days=today.weekday())
        last = first + timedelta(days=6)
    elif name == "month":
        first = today.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    else:
        first, last = today - timedelta(days=int(name) - 1), today
    start = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return start, end, first == last


def _buckets(start: datetime, end: datetime, zone: ZoneInfo, *, hourly: bool) -> list[datetime]:
    """The chart's bucket starts, as `gateway.web.periods.Period.buckets` makes them."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    out, at = [], start.astimezone(zone)
    while at.astimezone(UTC) < end:
        out.append(at)
        at = (
            (at.astimezone(UTC) + step).astimezone(zone)
            if hourly
            else datetime.combine(at.date() + step, datetime.min.time(), zone)
        )
    return out


def _cluster_cpu(postmaster: int) -> Callable[[], float]:
    """Seconds of CPU the PostgreSQL server has used so far (the postmaster and its backends:
    nothing but the bench uses this server), from /proc. A backend that has ended counts
    through the postmaster's cutime and cstime (proc(5): its reaped children's), so the sum
    never goes back when one ends between two samples."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime, stime; for the postmaster also cutime, cstime (its ended backends)
        own = int(fields[11]) + int(fields[12])
        return (own + (int(fields[13]) + int(fields[14]) if pid == postmaster else 0)) / tick

    def total() -> float:
        seconds = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(entry.name) == postmaster or int(fields[1]) == postmaster:
                    seconds += used(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # a process that ended while we looked
        return seconds

    return total


@dataclass(slots=True)
class Samples:
    """Each timed call's wall time, and the CPU the bench's process and the server spent on
    it (what the machine's load does not change)."""

    wall: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)


def _time(call: Callable[[], object], samples: Samples, server_cpu: Callable[[], float]) -> None:
    server, client, began = server_cpu(), time.process_time(), time.perf_counter()
    call()
    samples.wall.append((time.perf_counter() - began) * 1000)
    samples.client_cpu.append((time.process_time() - client) * 1000)
    samples.server_cpu.append((server_cpu() - server) * 1000)


def _line(label: str, samples: Samples) -> tuple[str, float]:
    q = statistics.quantiles(samples.wall, n=100, method="inclusive")
    p95 = q[94]
    return (
        f"  {label:36s} p50 {q[49]:6.1f} ms  p95 {p95:6.1f} ms  p99 {q[98]:6.1f} ms"
        f"  cpu/call bench {statistics.mean(samples.client_cpu):5.1f} ms"
        f" server {statistics.mean(samples.server_cpu):5.1f} ms ({len(samples.wall)} calls)",
        p95,
    )


def measure(
    url: str, info: dict[str, Any], seed: int, runs: int, server_cpu: Callable[[], float]
) -> list[tuple[str, float]]:
    rng = random.Random(seed + 1)
    engine = open_engine(url)
    results: list[tuple[str, float]] = []
    try:
        for zone_name in ZONES:
            zone = ZoneInfo(zone_name)
            for name in ("today", "week", "month", "90", "366"):
                samples = Samples()
                for _ in range(runs):
                    today = (YEAR_START + timedelta(days=rng.randrange(30, DAYS))).date()
                    start, end, hourly = _period(name, zone, today)

                    buckets = _buckets(start, end, zone, hourly=hourly)
                    days_in = None if hourly else zone_name
                    call = partial(revenue, engine, start, end, buckets, days_in=days_in)
                    _time(call, samples, server_cpu)
                label = f"revenue {name if name.isalpha() else name + ' days'} {zone_name}"
                results.append(_line(label, samples))
                print(results[-1][0], flush=True)
        drivers = Drivers(engine, lambda: datetime.now(UTC))
        page, by_station, by_month = Samples(), Samples(), Samples()
        for _ in range(runs):
            driver = rng.randrange(1, info["drivers"] + 1)

            def history_page(driver: int = driver) -> None:
                rows = drivers.history(driver)
                sorted({r["terminal_id"] for r in drivers.history(driver)})
                del rows

            _time(history_page, page, server_cpu)
            station = rng.choice(info["terminals"])
            _time(partial(drivers.history, driver, station=station), by_station, server_cpu)
            first = (YEAR_START + timedelta(days=rng.randrange(DAYS - 31))).date()
            last = first + timedelta(days=30)
            _time(partial(drivers.history, driver, first=first, last=last), by_month, server_cpu)
        for label, samples in (
            ("history page (/account)", page),
            ("history filtered by station", by_station),
            ("history filtered by a month", by_month),
        ):
            results.append(_line(label, samples))
            print(results[-1][0], flush=True)
        terminals, sessions = Samples(), Samples()
        for _ in range(runs):
            _time(partial(fleet, engine), terminals, server_cpu)
            _time(partial(active_sessions, engine), sessions, server_cpu)
        for label, samples in (
            ("fleet page: terminals", terminals),
            ("fleet page: sessions under way", sessions),
        ):
            results.append(_line(label, samples))
            print(results[-1][0], flush=True)
    finally:
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000_000)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the server's files and the generated database in DIR (for --reuse)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="time the database a --keep run generated in DIR (migrated to this code first)",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="with --keep: generate, do not time"
    )
    args = parser.parse_args(argv)
    if args.keep and args.reuse:
        parser.error("--keep and --reuse name one directory each: give one of them")
    if args.generate_only and not args.keep:
        parser.error("--generate-only needs --keep DIR")
    if args.reuse and not (args.reuse / KEPT).exists():
        parser.error(f"--reuse {args.reuse}: no {KEPT} there (make one with --keep)")
    from tests.postgres import PostgresServer  # the tests' own server harness

    server = PostgresServer(args.keep or args.reuse)
    server.start()
    try:
        if args.reuse:
            info = json.loads((args.reuse / KEPT).read_text())
            url = server.url(info["database"])
            print(
                f"bench_portal: reusing {info['sessions']:,} sessions on {info['stations']:,} "
                f"stations in {args.reuse} (generated in {info['seconds']:.0f} s; "
                f"database {info['size']})",
                flush=True,
            )
            engine = open_engine(url)
            began = time.monotonic()
            migrate(engine)  # what this code adds to the schema, on the kept rows
            engine.dispose()
            print(f"  migrated in {time.monotonic() - began:.0f} s", flush=True)
        else:
            url = server.database()
            engine = open_engine(url)
            migrate(engine)
            engine.dispose()
            print(
                f"bench_portal: generating {args.sessions:,} sessions on {args.stations:,} "
                f"stations over {DAYS} days (PostgreSQL, COPY)",
                flush=True,
            )
            info = generate(url, args.sessions, args.stations, args.seed)
            info.update(
                database=url.rsplit("/", 1)[1],
                sessions=args.sessions,
                stations=args.stations,
                seed=args.seed,
            )
            print(f"  generated in {info['seconds']:.0f} s; database {info['size']}", flush=True)
            if args.keep:
                (args.keep / KEPT).write_text(json.dumps(info))
        if args.generate_only:
            return 0
        load = os.getloadavg()
        print(f"  load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (1, 5, 15 min)")
        assert server.process is not None
        cpu = _cluster_cpu(server.process.pid)
        results = measure(url, info, info["seed"], args.runs, cpu)
        load = os.getloadavg()
        print(f"  load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (1, 5, 15 min)")
    finally:
        server.stop()
    worst = max(p95 for _, p95 in results)
    print(f"bench_portal: worst p95 {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
