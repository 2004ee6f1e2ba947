"""RCD trip to relay open: how long from the input edge to the relay output going low.

    .venv/bin/python -m bench.bench_gpio [--n 1000]

Runs on gpiozero's MockFactory: the RCD-trip input (pull-up, active low) is driven low, its
`FaultInputs` callback opens the `GpioContactor`, and the time is taken when the relay output
is low. Two paths:

- direct: the callback opens the relay itself, in the pin factory's event thread;
- queued: the callback only posts to a `queue.Queue` and a consumer thread opens the relay,
  the way the daemon routes device events through its one event queue;
- wired: the devices the pi wiring builds (`terminal.wiring.build_devices`, with the meter and
  EVSE board on a pymodbus emulator in a process of its own): the input's callback opens the
  relay through the fault interlock, then posts a `FaultRaised` through the fault sink to a
  queue, as in the daemon.

Target: under 20 ms (docs/architecture.md: the contactor opens at once on every fault).
Mock pins call back synchronously, so this measures our code and thread hand-off, not the GPIO
chip's interrupt latency (lgpio adds its own callback thread on a Pi). The "+busy" rows repeat
both paths while another thread keeps the interpreter busy, so a waiting thread gets the GIL
only at CPython's switch interval (5 ms by default).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable

from gpiozero.pins.mock import MockFactory

from drivers.gpio import (
    ContactorPins,
    FaultInput,
    FaultInputPins,
    FaultInputs,
    GpioContactor,
    InputPin,
)
from terminal.service import SWITCH_INTERVAL_S  # the value the daemon runs with

RELAY, FEEDBACK, ESTOP, RCD = 17, 27, 5, 6
TARGET_MS = 20.0


def measure(n: int, *, queued: bool) -> list[float]:
    factory = MockFactory()
    contactor = GpioContactor(
        ContactorPins(relay_pin=RELAY, feedback=InputPin(pin=FEEDBACK)), factory
    )
    opened = threading.Event()
    opened_at = [0]

    def open_relay() -> None:
        contactor.open()
        opened_at[0] = time.perf_counter_ns()
        opened.set()

    events: queue.Queue[FaultInput | None] = queue.Queue()
    consumer: threading.Thread | None = None
    on_fault: Callable[[FaultInput], None]
    if queued:

        def consume() -> None:
            while events.get() is not None:
                open_relay()

        consumer = threading.Thread(target=consume, name="bench-consumer", daemon=True)
        consumer.start()
        on_fault = events.put
    else:

        def on_fault(_which: FaultInput) -> None:
            open_relay()

    pins = FaultInputPins(emergency_stop=InputPin(pin=ESTOP), rcd_trip=InputPin(pin=RCD))
    inputs = FaultInputs(pins, factory, on_fault)
    rcd, relay = factory.pin(RCD), factory.pin(RELAY)
    samples: list[float] = []
    for _ in range(n):
        contactor.close()
        opened.clear()
        started = time.perf_counter_ns()
        rcd.drive_low()  # the RCD trips
        if not opened.wait(1.0) or relay.state != 0:
            raise SystemExit("relay did not open within 1 s")
        samples.append((opened_at[0] - started) / 1e6)
        rcd.drive_high()  # reset the RCD for the next round
    events.put(None)
    if consumer is not None:
        consumer.join(2.0)
    inputs.close()
    contactor.close_devices()
    factory.close()
    return samples


def measure_wired(n: int) -> list[float]:
    import tempfile  # the wiring's imports stay out of the plain paths' figures
    import tomllib
    from pathlib import Path

    from gpiozero.pins.mock import MockConnectedPin

    from hardware.clock import SystemClock
    from hardware.emulators.remote import EmulatorProcess
    from terminal.config import parse
    from terminal.core.events import Event
    from terminal.wiring import build_devices

    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "deploy" / "terminal.toml").read_text(encoding="utf-8"))
    factory = MockFactory()
    factory.pin(RELAY, pin_class=MockConnectedPin, input_pin=factory.pin(FEEDBACK))
    with EmulatorProcess() as emulators, tempfile.TemporaryDirectory() as tmp:
        line = emulators.modbus_line(meter={"unit_id": 1}, board={"unit_id": 2})
        rtu = {"port": line.port, "baudrate": 38400, "timeout_s": 0.5, "retries": 1}
        data["hardware"] = {
            "backend": "pi",
            "reader": str(Path(tmp) / "ttyPN532"),
            "meter": {**rtu, "unit_id": 1},
            "vehicle": {**rtu, "kind": "evse-din", "unit_id": 2, "poll_interval_s": 0.015},
            "gpio": {
                "pin_factory": "mock",
                "contactor": {
                    "relay_pin": RELAY,
                    "feedback": {"pin": FEEDBACK, "active_state": True},
                },
                "faults": {
                    "emergency_stop": {"pin": ESTOP, "active_state": True},
                    "rcd_trip": {"pin": RCD, "active_state": True},
                },
            },
            "display": {"kind": "web", "port": 0},
        }
        config = parse(data, base=root / "deploy")
        devices = build_devices(config, SystemClock(), pin_factory=factory)
        posted: queue.Queue[Event] = queue.Queue()
        assert devices.faults is not None
        devices.faults.connect(posted.put)
        rcd, relay = factory.pin(RCD), factory.pin(RELAY)
        samples: list[float] = []
        try:
            for _ in range(n):
                devices.contactor.close()
                if relay.state != 1:
                    raise SystemExit("relay did not close")
                started = time.perf_counter_ns()
                rcd.drive_high()  # the RCD's contact opens (fail-safe wiring: active high)
                if relay.state != 0:
                    raise SystemExit("relay still closed after the input callback")
                samples.append((time.perf_counter_ns() - started) / 1e6)
                posted.get(timeout=1.0)  # the FaultRaised the daemon would handle
                rcd.drive_low()
                posted.get(timeout=1.0)  # FaultCleared
        finally:
            devices.close()
            factory.close()
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    verdict = "ok" if max(ordered) < TARGET_MS else f"OVER the {TARGET_MS:.0f} ms target"
    print(
        f"{name:12s} n={len(samples)}  median {statistics.median(ordered):.3f} ms  "
        f"p99 {p99:.3f} ms  max {max(ordered):.3f} ms  ({verdict})"
    )


def busy_thread(stop: threading.Event) -> threading.Thread:
    """A pure-Python thread that wants the GIL all the time (a busy daemon loop)."""

    def spin() -> None:
        total = 0
        while not stop.is_set():
            total += sum(range(1000))

    thread = threading.Thread(target=spin, name="bench-busy", daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="edges per path")
    args = parser.parse_args()
    report("direct", measure(args.n, queued=False))
    report("queued", measure(args.n, queued=True))
    report("wired", measure_wired(args.n))
    stop = threading.Event()
    spinner = busy_thread(stop)
    report("direct+busy", measure(args.n, queued=False))
    report("queued+busy", measure(args.n, queued=True))
    report("wired+busy", measure_wired(args.n))
    default = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as `ev-terminal run` sets it
    report("wired+busy, 1 ms switch", measure_wired(args.n))
    sys.setswitchinterval(default)
    stop.set()
    spinner.join(2.0)


if __name__ == "__main__":
    main()
