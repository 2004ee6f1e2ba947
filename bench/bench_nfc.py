"""Card present to first APDU answered, and to a full card read, through nfcpy and the PN532
emulator on a pty.

    .venv/bin/python -m bench.bench_nfc [--n 200] [--scan-interval 0.05]

Each tap: the reader thread is blocked in `NfcReader.poll`; after a random delay (so the card
lands anywhere in the scan cycle, as a hand does) a fresh `visa` scripted card is put in the
emulated field. Measured from that moment:

- found: `poll` returned the card (sense, anticollision, RATS/ATS);
- first APDU: SELECT PPSE answered;
- full read: the whole `visa` script answered (SELECT PPSE, SELECT AID, GET PROCESSING
  OPTIONS, two READ RECORDs), the exchange the EMV kernel makes for a qVSDC online card.

The emulator answers at once and the pty has no baud rate, so this measures the driver, nfcpy
and the host-link round trips (four PN532 commands per APDU), not the 115 200 baud UART or a
card's own processing time. On a Pi with a PN532 at 115.2 kbit/s add about 1 ms per 11 bytes
on the wire each way plus the card's time (tens of ms for GENERATE AC / GPO on real cards).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time

from drivers.nfc_reader import SCAN_INTERVAL_S, NfcReader
from hardware.emulators.pn532 import Cmd, Pn532Emulator
from hardware.sim.card_script import ScriptedCard, load_named

VISA_SCRIPT = [
    bytes.fromhex("00A404000E325041592E5359532E444446303100"),
    bytes.fromhex("00A4040007A000000003101000"),
    bytes.fromhex("80A80000238321") + bytes(33) + b"\x00",
    bytes.fromhex("00B2010C00"),
    bytes.fromhex("00B2011400"),
]


def _arrive(emulator: Pn532Emulator, card: ScriptedCard, presented_at: list[float]) -> None:
    presented_at.append(time.perf_counter())
    emulator.present(card)


def measure(n: int, scan_interval_s: float) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"found": [], "first APDU": [], "full read": []}
    profile = load_named("visa")
    rng = random.Random(0)  # the same arrival pattern every run
    with Pn532Emulator() as emulator:
        reader = NfcReader(emulator.port, scan_interval_s=scan_interval_s)
        reader.poll(0)  # open the reader outside the measurement
        for _ in range(n):
            presented_at: list[float] = []
            delay = rng.uniform(0.0, 2 * scan_interval_s)
            timer = threading.Timer(delay, _arrive, (emulator, profile.card(), presented_at))
            timer.start()
            target = None
            while target is None:
                target = reader.poll(2.0)
            found = time.perf_counter()
            answers = [target.transceive(VISA_SCRIPT[0])]
            first = time.perf_counter()
            answers += [target.transceive(apdu) for apdu in VISA_SCRIPT[1:]]
            full = time.perf_counter()
            timer.join()
            assert all(answer[-2:] == b"\x90\x00" for answer in answers)
            samples["found"].append(found - presented_at[0])
            samples["first APDU"].append(first - presented_at[0])
            samples["full read"].append(full - presented_at[0])
            emulator.remove()
            reader.poll(3 * scan_interval_s)  # the reader notices the card left
        reader.close()
        per_apdu = emulator.commands[Cmd.IN_COMMUNICATE_THRU]
    print(f"host-link InCommunicateThru frames over the run: {per_apdu}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="taps to measure")
    parser.add_argument("--scan-interval", type=float, default=SCAN_INTERVAL_S)
    args = parser.parse_args()
    samples = measure(args.n, args.scan_interval)
    print(f"{args.n} taps, scan interval {args.scan_interval * 1000:.0f} ms, times from present")
    print(f"{'':12} {'median ms':>10} {'p99 ms':>10} {'max ms':>10}")
    for name, values in samples.items():
        ms = sorted(v * 1000 for v in values)
        p99 = statistics.quantiles(ms, n=100)[98] if len(ms) >= 2 else ms[0]
        print(f"{name:12} {statistics.median(ms):10.1f} {p99:10.1f} {ms[-1]:10.1f}")


if __name__ == "__main__":
    main()
