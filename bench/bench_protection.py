"""Card-data protection timings: one tap's protection on the kiosk, one decrypt on the gateway.

    .venv/bin/python bench/bench_protection.py [--n 200]

`protect` includes saving the DUKPT future-key registers before the key is used (a new
file fsynced, the old one zeroed and fsynced, a rename and a directory fsync), which dominates
on an SD card; `decrypt_blob` includes the host's IK and transaction-key derivation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from terminal.protection.dukpt import KeyType
from terminal.protection.host import decrypt_blob
from terminal.protection.keys import load_gateway_keys, provision_fleet
from terminal.protection.module import ProtectionModule

EMV = ((0x5A, bytes.fromhex("4761739001010010")), (0x9F26, bytes(8)), (0x9F36, b"\x00\x01"))


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:.3f} ms, max {max(samples) * 1e3:.3f} ms"


def run(n: int, key_type: KeyType) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = provision_fleet(
            Path(tmp) / "keys", fleet_id="bench", devices=["k"], key_type=key_type
        )
        module = ProtectionModule.from_key_dir(fleet.device_dirs["k"])
        bdk = load_gateway_keys(fleet.gateway_dir).bdk
        protect_times: list[float] = []
        decrypt_times: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            card = module.protect(
                pan="4761739001010010",
                expiry="2812",
                pan_sequence="01",
                track2=bytes.fromhex("4761739001010010D28122011143804400000F"),
                emv_data=EMV,
                brand="visa",
            )
            protect_times.append(time.perf_counter() - start)
            body = card.blob.to_json()
            start = time.perf_counter()
            decrypt_blob(bdk, body)
            decrypt_times.append(time.perf_counter() - start)
        print(f"{key_type.label} protect ({n}x): {_ms(protect_times)}")
        print(f"{key_type.label} decrypt_blob ({n}x): {_ms(decrypt_times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    for key_type in (KeyType.AES128, KeyType.AES256):
        run(args.n, key_type)


if __name__ == "__main__":
    main()
