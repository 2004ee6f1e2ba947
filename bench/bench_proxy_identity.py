"""What checking a forwarded client certificate costs the gateway, per request.

    .venv/bin/python bench/bench_proxy_identity.py [--n 2000]

Behind nginx every terminal request carries its certificate in X-SSL-Client-Cert and the
gateway verifies it again (`gateway.proxy_identity`): URL-decoding, parsing, one ECDSA P-256
signature check against the fleet CA, the validity periods and a CRL look-up (the CRL is
parsed once and re-read only when its file changes). Printed: the median and the 99th
percentile of one `identity` call, with a CRL of 0 and of 1,000 revoked serials, and the
header from an untrusted peer (ignored: no parsing at all).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from gateway.proxy_identity import ForwardedCertificates, parse_networks
from terminal.protection import certs


def _figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    median = statistics.median(ordered)
    return f"median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us, {1 / median:,.0f}/s"


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
        trusted: list[float] = []
        untrusted: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            identities.identity("127.0.0.1", headers)
            trusted.append(time.perf_counter() - start)
            start = time.perf_counter()
            identities.identity("192.0.2.1", headers)
            untrusted.append(time.perf_counter() - start)
        print(f"trusted proxy, CRL of {revoked} ({n}x): {_figures(trusted)}")
        if revoked == 0:
            print(f"untrusted peer, header ignored ({n}x): {_figures(untrusted)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the ignored header is logged each time; not measured
    for revoked in (0, 1000):
        run(args.n, revoked)


if __name__ == "__main__":
    main()
