"""`ev-terminal gateway` user errors: one line on stderr naming the problem, exit 2, nothing
created, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CASES = [
    ("no-identity", ["--db", "g.sqlite3"], "terminals must be identified"),
    ("port-out-of-range", ["--db", "g.sqlite3", "--insecure-dev", "--port", "99999"], "--port"),
    ("workers-zero", ["--db", "g.sqlite3", "--insecure-dev", "--workers", "0"], "--workers"),
    ("keys-not-a-dir", ["--db", "g.sqlite3", "--insecure-dev", "--keys", "nowhere"], "--keys"),
    ("keys-empty-dir", ["--db", "g.sqlite3", "--insecure-dev", "--keys", "."], "--keys"),
    ("tls-missing-files", ["--db", "g.sqlite3", "--tls", "."], "--tls"),
    ("proxy-without-ca", ["--db", "g.sqlite3", "--trusted-proxy", "127.0.0.1"], "--client-ca"),
    (
        "proxy-not-an-address",
        ["--db", "g.sqlite3", "--trusted-proxy", "nginx", "--client-ca", "ca.pem"],
        "--trusted-proxy",
    ),
    (
        "insecure-off-loopback",
        ["--db", "g.sqlite3", "--insecure-dev", "--host", "0.0.0.0"],
        "loopback",
    ),
    (
        "max-amount-not-a-number",
        ["--db", "g.sqlite3", "--insecure-dev", "--max-amount", "lots"],
        "--max-amount",
    ),
    ("smtp-no-port", ["--db", "g.sqlite3", "--insecure-dev", "--smtp", "mail"], "--smtp"),
    (
        "smtp-port-out-of-range",
        ["--db", "g.sqlite3", "--insecure-dev", "--smtp", "mail:70000", "--mail-from", "a@b.c"],
        "--smtp",
    ),
    (
        "smtp-without-sender",
        ["--db", "g.sqlite3", "--insecure-dev", "--smtp", "mail:25"],
        "--mail-from",
    ),
    (
        "sender-not-an-address",
        ["--db", "g.sqlite3", "--insecure-dev", "--smtp", "mail:25", "--mail-from", "nobody"],
        "--mail-from",
    ),
    (
        "sender-without-smtp",
        ["--db", "g.sqlite3", "--insecure-dev", "--mail-from", "a@b.c"],
        "--smtp",
    ),
    (
        "public-url-not-http",
        ["--db", "g.sqlite3", "--insecure-dev", "--public-url", "ftp://pay.example"],
        "--public-url",
    ),
    (
        "public-url-no-host",
        ["--db", "g.sqlite3", "--insecure-dev", "--public-url", "https://"],
        "--public-url",
    ),
    (
        "public-url-with-query",
        ["--db", "g.sqlite3", "--insecure-dev", "--public-url", "https://pay.example/?x=1"],
        "--public-url",
    ),
    (
        "public-url-with-user",
        ["--db", "g.sqlite3", "--insecure-dev", "--public-url", "https://u:p@pay.example"],
        "--public-url",
    ),
    (
        "public-url-bad-port",
        ["--db", "g.sqlite3", "--insecure-dev", "--public-url", "https://pay.example:99999"],
        "--public-url",
    ),
    ("no-database-yet", ["--db", "g.sqlite3", "--insecure-dev"], "migrate"),
    ("reconcile-no-database", ["reconcile", "--db", "g.sqlite3"], "migrate"),
]


@pytest.mark.parametrize(("args", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_and_exit_2_and_creates_nothing(
    tmp_path: Path, args: list[str], names: str
) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _run(args, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert _run(["migrate", "--db", "g.sqlite3"], tmp_path).returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["--db", "g.sqlite3", "--insecure-dev", "--port", str(port)], tmp_path)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "url", ["bogus://x", "postgresql://nobody@127.0.0.1:1/none"], ids=["scheme", "no-server"]
)
def test_simulate_with_an_unusable_gateway_database_is_one_line_and_exit_2(
    tmp_path: Path, url: str
) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "happy_visa.txt"
    config = Path(__file__).resolve().parents[2] / "deploy" / "terminal.toml"
    result = subprocess.run(
        [
            str(BIN / "ev-terminal"),
            "simulate",
            "--config",
            str(config),
            "--script",
            str(script),
            "--data",
            str(tmp_path / "data"),
            "--gateway-db",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gateway-db" in lines[0], result.stderr
    assert not (tmp_path / "data").exists()
