"""What checking a forwarded client certificate costs the gateway, per request.

    .venv/bin/python bench/bench_proxy_identity.py [--n 2000]

Behind nginx every terminal request carries its certificate in X-SSL-Client-Cert and the
gateway verifies it again (`gateway.proxy_identity`): URL-decoding, parsing, one ECDSA P-256
signature check against the fleet CA, the validity periods and a CRL look-up (the CRL is
parsed once and re-read only when its file changes). Printed: the median and the 99th
percentile of one `identity` call, with a CRL of 0 and of 1,000 revoked serials, and the
header from an untrusted peer (ignored: no parsing at all). Wall-clock p99 on a loaded
machine is mostly time spent waiting for a core, so the p99 of the thread's CPU time is
printed beside it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from gateway.proxy_identity import ForwardedCertificates, parse_networks
from terminal.protection import certs


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def _figures(samples: list[float], cpu: list[float]) -> str:
    median = statistics.median(samples)
    return (
        f"median {median * 1e6:.0f} us, p99 {_p99(samples) * 1e6:.0f} us "
        f"(CPU p99 {_p99(cpu) * 1e6:.0f} us), {1 / median:,.0f}/s"
    )


def _timed(call: Callable[[], object], wall: list[float], cpu: list[float]) -> None:
    start, start_cpu = time.perf_counter(), time.thread_time()
    call()
    cpu.append(time.thread_time() - start_cpu)
    wall.append(time.perf_counter() - start)


def run(n: int, revoked: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        certs.provision_tls(root, fleet="bench", devices=["K1"], server_hosts=["127.0.0.1"])
        ca = certs.load_ca(root)
        crl_file = root / "gateway" / certs.CRL_FILE
        crl_file.write_bytes(certs.crl(ca, range(1_000_000, 1_000_000 + revoked)))
        pem = (root / "devices" / "K1" / certs.CLIENT_CERT_FILE).read_text()
        headers = {"X-SSL-Client-Cert": quote(pem, safe="")}
        identities = ForwardedCertificates(
            root / "gateway" / certs.CA_FILE,
            crl_file,
            parse_networks(["127.0.0.1"]),
            lambda: datetime.now(UTC),
        )
        assert identities.identity("127.0.0.1", headers) == "K1"
        trusted: tuple[list[float], list[float]] = ([], [])
        untrusted: tuple[list[float], list[float]] = ([], [])
        for _ in range(n):
            _timed(lambda: identities.identity("127.0.0.1", headers), *trusted)
            _timed(lambda: identities.identity("192.0.2.1", headers), *untrusted)
        print(f"trusted proxy, CRL of {revoked} ({n}x): {_figures(*trusted)}")
        if revoked == 0:
            print(f"untrusted peer, header ignored ({n}x): {_figures(*untrusted)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the ignored header is logged each time; not measured
    for revoked in (0, 1000):
        run(args.n, revoked)


if __name__ == "__main__":
    main()
