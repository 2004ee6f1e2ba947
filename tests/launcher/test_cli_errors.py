"""Every user error on the command line: one line naming the problem, exit 2, no traceback,
nothing created. Each case runs `ev-terminal` as a process in an empty directory, with no
terminal on standard input, and compares the directory before and after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "deploy" / "terminal.toml")
SCRIPT = str(REPO / "tests" / "scripts" / "happy_visa.txt")


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    says: str  # a part of the one line on stderr
    files: dict[str, str] = field(default_factory=dict)  # made before the run (relative)


CASES = [
    Case("no command", [], "the following arguments are required: COMMAND"),
    Case("unknown command", ["charge"], "invalid choice: 'charge'"),
    Case("unknown option", ["diagram", "--svg"], "unrecognized arguments: --svg"),
    # simulate
    Case("simulate without a script", ["simulate"], "required: --script"),
    Case(
        "simulate, missing script",
        ["simulate", "--config", CONFIG, "--script", "nope.txt"],
        "--script nope.txt: no such file",
    ),
    Case(
        "simulate, a directory as script",
        ["simulate", "--config", CONFIG, "--script", "."],
        "--script .: not a file",
    ),
    Case(
        "simulate, a bad script line",
        ["simulate", "--config", CONFIG, "--script", "s.txt", "--data", "d"],
        "line 2: unknown step 'jump'",
        {"s.txt": "tap visa\njump\n"},
    ),
    Case(
        "simulate, a missing processors file",
        ["simulate", "--config", CONFIG, "--script", SCRIPT, "--processors", "p.toml"],
        "--processors p.toml: no such file",
    ),
    Case(
        "simulate, a processors file the gateway refuses",
        ["simulate", "--config", CONFIG, "--script", SCRIPT, "--processors", "p.toml"],
        "--processors p.toml: processors[0].invoice_key: give exactly one of",
        {"p.toml": '[[processors]]\nadapter = "lightning"\naccount = "w"\nurl = "http://l"\n'},
    ),
    Case(
        "simulate, a Lightning wallet without its key",
        ["simulate", "--config", CONFIG, "--script", SCRIPT, "--lightning-wallet", "http://l"],
        "--lightning-wallet and --lightning-wallet-key go together",
    ),
    Case(
        "simulate, a Lightning wallet that is not a URL",
        [
            "simulate",
            "--config",
            CONFIG,
            "--script",
            SCRIPT,
            "--lightning-wallet",
            "lnbits",
            "--lightning-wallet-key",
            "k",
        ],
        "--lightning-wallet lnbits: not an http(s) URL",
        {"k": "0123abcd\n"},
    ),
    Case(
        "simulate, a Lightning wallet key that is not a key",
        [
            "simulate",
            "--config",
            CONFIG,
            "--script",
            SCRIPT,
            "--lightning-wallet",
            "http://127.0.0.1:5000",
            "--lightning-wallet-key",
            "k",
        ],
        "--lightning-wallet-key k: not an LNbits key",
        {"k": "my key; rm -rf\n"},
    ),
    Case(
        "simulate, a bad config",
        ["simulate", "--config", "missing.toml", "--script", SCRIPT, "--data", "d"],
        "missing.toml: cannot read",
    ),
    Case(
        "simulate, a file as data dir",
        ["simulate", "--config", CONFIG, "--script", SCRIPT, "--data", "f"],
        "--data f: not a directory",
        {"f": "x"},
    ),
    # demo
    Case("demo at speed 0", ["demo", "--config", CONFIG, "--data", "d", "--speed", "0"], "0 must"),
    Case("demo at speed -1", ["demo", "--data", "d", "--speed", "-1"], "-1 must be more than 0"),
    Case("demo at speed fast", ["demo", "--data", "d", "--speed", "fast"], "'fast' is not a"),
    Case("demo, a bad config", ["demo", "--config", "no.toml", "--data", "d"], "no.toml"),
    Case(
        "demo, a file as data dir",
        ["demo", "--config", CONFIG, "--data", "f"],
        "--data f: not a directory",
        {"f": "x"},
    ),
    # check-config and run
    Case("check-config without a file", ["check-config"], "required: config"),
    Case("check-config, missing file", ["check-config", "no.toml"], "no.toml: cannot read"),
    Case("check-config, a directory", ["check-config", "."], "cannot read"),
    Case(
        "check-config, a missing key dir",
        ["check-config", "c.toml"],
        "data.keys_dir: ",
        {"c.toml": Path(CONFIG).read_text().replace('# keys_dir = "keys"', 'keys_dir = "keys"')},
    ),
    # `run` refuses a config without a key dir, so check-config does not say "ok" for it.
    Case("check-config, no keys_dir", ["check-config", CONFIG], "data.keys_dir: missing"),
    Case("run, missing config", ["run", "--config", "no.toml"], "no.toml: cannot read"),
    Case("run, no keys_dir", ["run", "--config", CONFIG], "data.keys_dir: missing"),
    # the subcommands that parse their own arguments
    Case("set-technician-pin, nothing", ["set-technician-pin"], "one of the arguments --config"),
    Case(
        "set-technician-pin without a terminal",
        ["set-technician-pin", "--file", "pin"],
        "no terminal to ask for the PIN on; use --stdin",
    ),
    Case("provision, nothing", ["provision"], "the following arguments are required: --out"),
    Case(
        "provision, bad key size",
        ["provision", "--out", "k", "--fleet", "f", "--device", "d", "--aes", "100"],
        "invalid choice: 100",
    ),
    Case("price, nothing", ["price"], "required: --tariff, --session"),
    # servers: {busy} is a port another socket listens on
    Case("csms on port 99999", ["csms", "--port", "99999"], "99999 must be from 0 to 65535"),
    Case("csms on a port in use", ["csms", "--port", "{busy}"], ":{busy}: Address already in use"),
    Case("gateway on port 99999", ["gateway", "--port", "99999", "--insecure-dev"], "99999"),
    Case("gateway, port abc", ["gateway", "--port", "abc", "--insecure-dev"], "'abc'"),
    Case("gateway, wrong --keys", ["gateway", "--keys", "k", "--insecure-dev"], "--keys: k is"),
    Case("gateway, missing --tls files", ["gateway", "--tls", "t"], "tls-server.pem", {"t/x": ""}),
    Case("gateway, unknown action", ["gateway", "start"], "invalid choice: 'start'"),
    Case(
        "csms, missing TLS files",
        ["csms", "--port", "0", "--cert", "c.pem", "--key", "k.pem"],
        "--cert c.pem: no such file",
    ),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_user_error_is_one_line_and_exit_2(case: Case, tmp_path: Path, busy_port: int) -> None:
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    argv = [arg.replace("{busy}", str(busy_port)) for arg in case.argv]
    says = case.says.replace("{busy}", str(busy_port))
    before = _tree(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert says in lines[0]
    assert done.returncode == 2
    assert done.stdout == ""
    assert _tree(tmp_path) == before  # nothing created, nothing changed


def test_ctrl_c_at_a_prompt_is_no_traceback(tmp_path: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "launcher.cli", "set-technician-pin", "--file", str(tmp_path / "pin")],
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        # As a terminal's shell starts it: Ctrl-C interrupts. A test run started in the
        # background of a shell inherits SIGINT ignored, and so would the child.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.expect("technician PIN: ")
    child.sendcontrol("c")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    output = child.before.decode()
    assert "interrupted" in output
    assert "Traceback" not in output
    assert not (tmp_path / "pin").exists()


@pytest.fixture
def gateway_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """The gateway processes a test started; any still running at its end (a failed or
    timed-out step) is killed and reaped, so none outlives the test."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _gateway(started: list[subprocess.Popen[str]], db: Path, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "gateway", "--db", str(db), *args],
        cwd=db.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    started.append(process)
    return process


def test_the_gateway_says_where_it_listens_and_names_a_port_in_use(
    tmp_path: Path, busy_port: int, gateway_processes: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "gateway.sqlite3"
    migrate = _gateway(gateway_processes, db, "migrate")
    migrate.communicate(timeout=60)
    assert migrate.returncode == 0
    before = _tree(tmp_path)

    busy = _gateway(gateway_processes, db, "--port", str(busy_port), "--insecure-dev")
    _, err = busy.communicate(timeout=60)
    assert busy.returncode == 2
    assert err.splitlines() == [
        f"ev-terminal gateway: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]
    assert set(_tree(tmp_path)) == set(before)  # no file created

    serving = _gateway(gateway_processes, db, "--port", "0", "--insecure-dev")
    try:
        assert serving.stdout is not None
        url = None
        for line in serving.stdout:
            if line.startswith("gateway listening on "):
                url = line.split()[-1]
                break
        assert url is not None and url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        serving.terminate()
        serving.communicate(timeout=30)  # reaps it and closes its pipes
