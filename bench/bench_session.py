"""Session benchmarks (issue: the charging session end to end).

Prints:
- `step` throughput: events/s through the pure state machine over a whole charging session;
- tap → "approved" on the simulated display, through the card kernel, protection, journal and
  a local gateway over HTTP (median, p99 over N sessions);
- the daemon's peak RSS, in a process of its own talking to a gateway in another process.

Run: `python -m bench.bench_session [--sessions N]` from the repo root.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from launcher.simulate import Simulation, parse_script
from terminal.config import load

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "terminal.toml"


def bench_step(samples: int = 50_000) -> float:
    from hardware.ports import PilotState
    from terminal.core.events import (
        AuthorizationAnswered,
        AuthOutcome,
        CardPresented,
        MeterSampled,
        PoweredUp,
        VehicleStateChanged,
    )
    from terminal.core.kiosk import Kiosk
    from terminal.core.machine import step
    from terminal.core.session import Card, CardKind
    from terminal.money import Money
    from terminal.station import build_rules, build_tariff

    config = load(CONFIG)
    rules = build_rules(config, build_tariff(config))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(ms: int) -> dict[str, object]:
        return {"at_ms": ms, "at": t0 + timedelta(milliseconds=ms)}

    card = Card(kind=CardKind.PAYMENT, token="ct_bench0000", brand="Visa", last4="0010")
    events = [
        PoweredUp(register_wh=1000, **at(0)),  # type: ignore[arg-type]
        VehicleStateChanged(state=PilotState.C, **at(1)),  # type: ignore[arg-type]
        CardPresented(card=card, session_id="bench-session-1", **at(2)),  # type: ignore[arg-type]
        AuthorizationAnswered(  # type: ignore[arg-type]
            session_id="bench-session-1",
            outcome=AuthOutcome.APPROVED,
            amount=Money(100_000_000, "EUR"),
            **at(3),
        ),
    ]
    events += [
        MeterSampled(energy_wh=1000 + i * 3, power_w=11000, **at(1000 * (i + 1)))  # type: ignore[arg-type]
        for i in range(samples)
    ]
    kiosk = Kiosk(rules=rules)
    start = time.perf_counter()
    for event in events:
        kiosk, _ = step(kiosk, event)
    elapsed = time.perf_counter() - start
    return len(events) / elapsed


def bench_tap(sessions: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = replace(load(CONFIG), data_dir=Path(tmp) / "data")
        sim = Simulation(config=config, data_dir=Path(tmp))
        tap = parse_script("tap visa", {"visa"})[0]
        times = []
        try:
            for _ in range(sessions):
                start = time.perf_counter()
                sim.run_step(tap)  # tap → kernel → protection → journal → gateway → screen
                times.append(time.perf_counter() - start)
                shown = sim.hardware.display.current
                assert shown is not None and shown.name == "plug-in", shown
                sim.run_step(tap)  # the same card cancels: the hold is voided
                sim.advance(10_000)
        finally:
            sim.close()
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000


CHILD = r"""
import json, sys, tempfile
from dataclasses import replace
from pathlib import Path
from hardware.clock import ManualClock
from hardware.sim.card_script import load_profiles
from terminal.config import load
from terminal.station import SimHardware, build_daemon, sim_keys

url, sessions = sys.argv[1], int(sys.argv[2])
tmp = Path(tempfile.mkdtemp())
config = replace(load(Path(sys.argv[3])), data_dir=tmp)
clock = ManualClock()
hw = SimHardware.build(clock)
key_dir, _ = sim_keys(tmp, config.station.id)
daemon = build_daemon(
    config=config, devices=hw.devices(), clock=clock, gateway_url=url, key_dir=key_dir
)
daemon.start()
card = load_profiles()["visa"]

def settle():
    for _ in range(1000):
        busy = daemon.poll_devices() | (daemon.pump() > 0) | (daemon.sender.drain_safely().sent > 0)
        if not busy:
            return

settle()
for _ in range(sessions):
    hw.reader.present(card.card()); settle()
    hw.vehicle.plug(); hw.vehicle.charge(); settle()
    for _ in range(120):
        clock.advance(1000); settle()
    hw.reader.present(card.card()); settle()
    hw.vehicle.unplug(); settle()
    clock.advance(61_000); settle()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec,
# so a child of a large parent would report the parent's peak.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rss_kb": int(hwm.split()[1])}))
"""


def bench_rss(sessions: int) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "launcher.cli",
                "gateway",
                "--db",
                f"{tmp}/gw.sqlite3",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    f"http://127.0.0.1:{port}",
                    str(sessions),
                    str(CONFIG),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_kb"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()
    print(f"step throughput: {bench_step():,.0f} events/s")
    median, p99 = bench_tap(args.sessions)
    print(
        f"tap -> approved (sim + local gateway, {args.sessions} sessions): "
        f"median {median:.2f} ms, p99 {p99:.2f} ms (target p99 < 50 ms)"
    )
    rss = bench_rss(min(args.sessions, 100))
    print(f"daemon peak RSS: {rss / 1024:.1f} MB (target < 60 MB)")


if __name__ == "__main__":
    main()
