"""Pay by phone: from the processor's approval to the contactor closing, through the command
channel, on loopback.

    .venv/bin/python -m bench.bench_pay_by_phone [--n 200]

The real daemon runs on its threads (the command channel's long poll among them) on the
simulated hardware with the system clock, against the embedded gateway (the simulated
processor). The vehicle is plugged in and ready to charge before each payment (state B: it
waits for the pilot's PWM, IEC 61851-1), so once the kiosk starts the session and offers
energy the simulated vehicle goes to C at once and the contactor closes. Each round: the
hold is placed as the payment page places it (`Payments.hold_web`); from its approved
answer, the gateway writes the start command (`Commands.start`, which wakes the open poll),
the kiosk's channel journals it and posts it, the machine records the session, answers and
offers energy, the vehicle thread sees C, and the executor closes the contactor; the bench
stamps the moment the simulated contactor reports closed. Then the vehicle is unplugged (the
session ends and settles) before the next round.

Prints the median, p99 and max in milliseconds. No target is set by the issue; the figures
are for the notes (the long poll is not the limit: the start is one command away).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD
from gateway.server import EmbeddedGateway
from hardware.clock import SystemClock
from terminal.config import load
from terminal.money import Money
from terminal.station import SimHardware, build_daemon, sim_keys

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "terminal.toml"
WAIT_S = 20.0


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for: {what}")
        time.sleep(0.0002)


def measure(n: int) -> list[float]:
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        data = Path(tmp) / "data"
        config = replace(load(EXAMPLE), data_dir=data)
        gateway = EmbeddedGateway(Path(tmp) / "gateway.sqlite3")
        gateway.up()
        stack.callback(gateway.close)
        clock = SystemClock()
        hardware = SimHardware.build(clock)
        device_keys, _ = sim_keys(data, config.station.id)
        daemon = build_daemon(
            config=config,
            devices=hardware.devices(),
            clock=clock,
            gateway_url=gateway.url,
            key_dir=device_keys,
        )
        runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        runner.start()
        stack.callback(runner.join, 5)
        stack.callback(daemon.stop)
        until(lambda: hardware.display.current is not None, "the idle screen")
        contactor = hardware.contactor
        for i in range(n):
            hardware.vehicle.plug()
            hardware.vehicle.charge()
            until(lambda: daemon.kiosk.pilot.connected, "the vehicle plugged in (state B)")
            closes = contactor.history.count("close")
            aid = f"bench-web-{i:06d}-session"
            card = CardRef(
                kind=WEB_CARD,
                token=f"web:{aid}",
                brand="Test",
                last4="4242",
                expiry=None,
                payload={},
            )
            answer = gateway.payments.hold_web(
                authorization_id=aid,
                terminal_id=config.station.id,
                card=card,
                amount=Money(config.payment.hold, "EUR"),
            ).answer
            approved = time.perf_counter()
            if answer.body.get("status") != "approved":
                raise SystemExit(f"the simulated processor did not approve: {answer.body}")
            gateway.commands.start(
                aid,
                expires_at=gateway.ledger.clock() + timedelta(minutes=5),
                brand="Test",
                last4="4242",
            )
            until(
                lambda before=closes: contactor.history.count("close") > before,
                "the contactor closing",
            )
            samples.append((time.perf_counter() - approved) * 1000)
            hardware.vehicle.unplug()
            until(lambda: daemon.kiosk.session is None, "the session settled")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_pay_by_phone")
    parser.add_argument("--n", type=int, default=200, help="sessions (default 200)")
    args = parser.parse_args(argv)
    samples = sorted(measure(args.n))
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(
        f"pay by phone, approval -> contactor closed over {len(samples)} sessions: "
        f"median {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms, "
        f"max {samples[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
