"""Pricing a 12-hour session sampled every second under a time-of-day OCPI tariff.

    python -m bench.bench_tariff

Prints the time per incremental `advance` (what the session machine pays per meter sample)
and per full recomputation of the whole session from its 43,200 charging periods."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from terminal.tariff import ChargingPeriod, OcpiTariff

TARIFF = (
    Path(__file__).resolve().parents[1] / "deploy" / "tariffs" / "time-of-day-with-idle-fee.json"
)
SECONDS = 12 * 3600
POWER_W = 11_000


def main() -> None:
    tariff = OcpiTariff.from_json(TARIFF.read_bytes(), tz=ZoneInfo("Europe/Berlin"))
    # Starts 16:00 local: crosses 20:00, 22:00 and 00:00; parks for the last two hours.
    start = datetime(2024, 5, 6, 14, tzinfo=UTC)
    samples = [
        (start + timedelta(seconds=s), s * POWER_W // 3600, s <= 10 * 3600)
        for s in range(1, SECONDS + 1)
    ]
    meterage = tariff.begin(start)
    began = time.perf_counter()
    for at, energy, charging in samples:
        meterage = meterage.advance(
            at=at,
            energy_wh=min(energy, 110_000),
            power_w=POWER_W,
            current_ma=16_000,
            charging=charging,
        )
    per_sample = (time.perf_counter() - began) / SECONDS

    began = time.perf_counter()
    for _ in range(100):
        meterage.total()
    per_total = (time.perf_counter() - began) / 100

    periods = []
    previous = 0
    for i, (_, delivered, charging) in enumerate(samples):
        energy = min(delivered, 110_000)
        periods.append(
            ChargingPeriod(
                start=samples[i - 1][0] if i else start,
                energy_wh=energy - previous,
                power_w=POWER_W,
                current_ma=16_000,
                charging=charging,
            )
        )
        previous = energy
    began = time.perf_counter()
    full = tariff.price(start=start, periods=periods, end=samples[-1][0])
    per_full = time.perf_counter() - began
    assert full == meterage.price(), "incremental and full recomputation disagree"

    print(f"session: {SECONDS} samples (12 h at 1 s), tariff {tariff.name}")
    print(f"incremental advance:   {per_sample * 1e6:8.1f} µs per sample")
    print(f"running total():       {per_total * 1e6:8.1f} µs per call")
    print(
        f"full recomputation:    {per_full * 1e3:8.1f} ms per session "
        f"({per_full / SECONDS * 1e6:.1f} µs per period)"
    )
    print(f"total: {full.bill.total} (excl. VAT {full.bill.total_excl_vat})")


if __name__ == "__main__":
    main()
