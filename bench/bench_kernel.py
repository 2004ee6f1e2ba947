"""Kernel time per tap, card I/O excluded, and BER-TLV parse rate.

Run from the repository root: ``python -m bench.bench_kernel [runs]``. The card is a
`ScriptedCard`; time spent inside its `transceive` is subtracted, so the figure is what the
kernel itself adds to a tap (target: under 5 ms on the kiosk's Raspberry Pi). No card data
is printed.
"""

from __future__ import annotations

import datetime
import statistics
import sys
import time
from collections.abc import Callable

from hardware.sim.card_script import load_named
from terminal.card.card_data import Outcome
from terminal.card.kernel import run_kernel
from terminal.card.terminal_data import TerminalData
from terminal.card.tlv import parse, walk

TARGET_MS = 5.0
TERMINAL = TerminalData(
    amount_authorized=5000,
    currency_code=978,
    country_code=276,
    transaction_date=datetime.date(2025, 6, 15),
    unpredictable_number=bytes.fromhex("1A2B3C4D"),
)


def kernel_times_ms(profile_name: str, runs: int) -> list[float]:
    """Per-run kernel time in milliseconds, time inside `transceive` excluded."""
    profile = load_named(profile_name)
    times: list[float] = []
    for _ in range(runs):
        io = [0.0]
        transceive = _timed(profile.card().transceive, io)
        start = time.perf_counter()
        result = run_kernel(transceive, TERMINAL)
        total = time.perf_counter() - start
        if result.outcome is not Outcome.APPROVED_FOR_ONLINE:
            raise SystemExit(f"{profile_name}: unexpected outcome {result.outcome.name}")
        times.append((total - io[0]) * 1000)
    return times


def _timed(inner: Callable[[bytes], bytes], spent: list[float]) -> Callable[[bytes], bytes]:
    """`inner`, adding the seconds spent in it to spent[0]."""

    def transceive(apdu: bytes) -> bytes:
        start = time.perf_counter()
        try:
            return inner(apdu)
        finally:
            spent[0] += time.perf_counter() - start

    return transceive


def tlv_rate(seconds: float = 1.0) -> tuple[float, float]:
    """(MB/s, data objects/s) parsing the responses of the visa and mastercard profiles."""
    blobs = [
        exchange.response[:-2]
        for name in ("visa", "mastercard")
        for exchange in load_named(name).script
        if len(exchange.response) > 2
    ]
    size = sum(len(blob) for blob in blobs)
    objects = sum(sum(1 for _ in walk(parse(blob))) for blob in blobs)
    rounds = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for blob in blobs:
            parse(blob)
        rounds += 1
    elapsed = time.perf_counter() - start
    return size * rounds / elapsed / 1e6, objects * rounds / elapsed


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main(argv: list[str]) -> int:
    runs = int(argv[1]) if len(argv) > 1 else 2000
    worst = 0.0
    for name in ("visa", "mastercard"):
        times = kernel_times_ms(name, runs)
        median, p99 = statistics.median(times), _p99(times)
        worst = max(worst, p99)
        print(f"kernel {name:<10} runs={runs} median={median:.3f} ms p99={p99:.3f} ms")
    mb_s, tlv_s = tlv_rate()
    print(f"tlv parse {mb_s:.2f} MB/s, {tlv_s:,.0f} data objects/s")
    verdict = "within" if worst < TARGET_MS else "OVER"
    print(f"kernel share of a tap: p99 {worst:.3f} ms, {verdict} the {TARGET_MS:.0f} ms target")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
