"""Tap to "approved" on the screen, through the whole kiosk on real drivers.

    .venv/bin/python -m bench.bench_tap_pn532 [--n 30]

The kiosk is built by the pi wiring (`terminal.wiring.build_devices`) and its daemon runs with
its threads: nfcpy reads the `visa` card through the PN532 emulator on a pty, the card kernel
and the protection module read and protect it, the authorization goes through the outbox to the
embedded gateway over HTTP, and the machine's "plug-in" (approved) frame reaches the kiosk web
page's frame source (what the page's event stream sends). Meter and EVSE board are pymodbus
emulators; the emulated devices run in a process of their own (`hardware/emulators/remote.py`);
the pins are gpiozero mock pins.

Each round: the card lands at a random point of the reader's scan cycle; the time is taken
from `present` to the web display holding the "plug-in" frame. Then the same card taps again
(cancel: the hold is voided) and the kiosk returns to idle before the next round.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockConnectedPin, MockFactory

from drivers.display_web import WebDisplay
from gateway.server import EmbeddedGateway
from hardware.clock import SystemClock
from hardware.emulators.remote import EmulatorProcess
from hardware.ports import PilotState
from hardware.sim.card_script import load_profiles
from terminal.config import parse
from terminal.station import build_daemon, sim_keys
from terminal.wiring import build_devices

ROOT = Path(__file__).resolve().parent.parent
RELAY, FEEDBACK = 17, 27
WAIT_S = 10.0


def kiosk_config(data_dir: Path, reader: str, line: str, gateway: str) -> Any:
    data = tomllib.loads((ROOT / "deploy" / "terminal.toml").read_text(encoding="utf-8"))
    data["session"] = {"notice_time": "50ms"}
    data["gateway"] = {"url": gateway, "receipt_url": gateway + "/receipts"}
    data["data"] = {"dir": str(data_dir)}
    rtu = {"port": line, "baudrate": 38400, "timeout_s": 0.5, "retries": 1}
    data["hardware"] = {
        "backend": "pi",
        "reader": reader,
        "meter": {**rtu, "unit_id": 1},
        "vehicle": {**rtu, "kind": "evse-din", "unit_id": 2, "poll_interval_s": 0.015},
        "gpio": {
            "pin_factory": "mock",
            "contactor": {"relay_pin": RELAY, "feedback": {"pin": FEEDBACK, "active_state": True}},
            "faults": {
                "emergency_stop": {"pin": 5, "active_state": True},
                "rcd_trip": {"pin": 6, "active_state": True},
            },
        },
        "display": {"kind": "web", "port": 0},
        "watchdog": {"enabled": False},  # a bench has no /dev/watchdog (docs/drivers.md)
    }
    return parse(data, base=ROOT / "deploy")


def wait_for_screen(display: WebDisplay, name: str, after_seq: int) -> int:
    """Wait until the display shows `name` in a frame newer than `after_seq`; its seq."""
    deadline = time.monotonic() + WAIT_S
    seq = after_seq
    while time.monotonic() < deadline:
        frame = display.wait_newer(seq, max(deadline - time.monotonic(), 0.0))
        if frame is None:
            break
        seq = frame["seq"]
        if frame["name"] == name:
            return seq
    raise SystemExit(f"the screen did not show {name!r} within {WAIT_S} s")


def measure(n: int) -> list[float]:
    profile = load_profiles()["visa"]
    rng = random.Random(0)
    samples: list[float] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tap-")))
        gateway = EmbeddedGateway(tmp / "gateway.sqlite3")
        gateway.up()
        stack.callback(gateway.close)
        emulators = stack.enter_context(EmulatorProcess())
        reader = emulators.pn532()
        line = emulators.modbus_line(
            meter={"model": "sdm630", "unit_id": 1, "energy_wh": 1_000_000, "power_w": 0},
            board={"unit_id": 2, "state": PilotState.A},
        )
        factory = MockFactory()
        stack.callback(factory.close)
        factory.pin(RELAY, pin_class=MockConnectedPin, input_pin=factory.pin(FEEDBACK))
        config = kiosk_config(tmp / "data", reader.port, line.port, gateway.url)
        clock = SystemClock()
        devices = build_devices(config, clock, pin_factory=factory)
        stack.callback(devices.close)
        key_dir, _ = sim_keys(config.data_dir, config.station.id)
        daemon = build_daemon(
            config=config, devices=devices, clock=clock, gateway_url=gateway.url, key_dir=key_dir
        )
        assert devices.faults is not None
        devices.faults.connect(daemon.post)
        thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        thread.start()
        stack.callback(thread.join, 5.0)
        stack.callback(daemon.stop)
        display: WebDisplay = devices.display.display  # type: ignore[attr-defined]
        seq = wait_for_screen(display, "idle", -1)
        for _ in range(n):
            time.sleep(rng.uniform(0.0, 0.1))  # land anywhere in the 50 ms scan cycle
            started = time.perf_counter()
            reader.present(profile.card())
            seq = wait_for_screen(display, "plug-in", seq)
            samples.append((time.perf_counter() - started) * 1000)
            reader.remove()
            time.sleep(0.1)  # the reader notices the card left
            reader.present(profile.card())  # the same card again: cancel
            seq = wait_for_screen(display, "idle", seq)
            reader.remove()
            time.sleep(0.1)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="taps")
    args = parser.parse_args()
    ordered = sorted(measure(args.n))
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"tap -> approved on screen  n={len(ordered)}  median {statistics.median(ordered):.1f} ms"
        f"  p99 {p99:.1f} ms  max {max(ordered):.1f} ms"
    )


if __name__ == "__main__":
    main()
