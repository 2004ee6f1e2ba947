"""`bench/bench_gateway.py` runs end to end in its short mode: the real gateway and the floor
as subprocesses, the load generator as a third, every request answered. No figure is
asserted (a benchmark prints figures; tests never time anything)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^sqlite\s+1 (full|floor)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)")


def test_quick_run_measures_both_paths_with_every_request_answered() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_gateway",
            "--quick",
            "--backends",
            "sqlite",
            "--workers",
            "1",
            "--money",
            "20",
            "--concurrency",
            "4",
            "--open-seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    # 1 is a missed target on a busy machine; anything else is the benchmark breaking.
    assert done.returncode in (0, 1), out + done.stderr
    rows = {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in map(ROW.match, out.splitlines())
        if m
    }
    assert rows == {"full": (20, 0), "floor": (20, 0)}, out
    assert re.search(r"ratio full/floor \d+\.\d\d", out), out
    opened = re.search(r"open loop: offered \d+/s, answered (\d+) \((\d+) errors, (\d+) not", out)
    assert opened is not None, out
    answered, errors, late = map(int, opened.groups())
    # Not answered within the grace period is slowness (it counts in the p99), not a failure.
    assert (answered + late, errors) == (300, 0), out
    figures = r"\s+[\d.]+" * 6
    # The summary line: rates, ratio, p99, both CPU figures; no database server's for SQLite.
    summary = re.search(rf"^sqlite\s+1{figures}\s+-\s+-$", out, re.M)
    assert summary is not None, out


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_a_bad_number_of_rounds_is_one_line_naming_the_option(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_gateway", "--rounds", value],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "argument --rounds" in last, done.stderr
    assert "Traceback" not in done.stderr
