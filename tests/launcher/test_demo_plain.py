"""`ev-terminal demo` without a terminal (commands from a pipe): each new screen by name, the
answers line by line, and a clean end at the end of input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def test_piped_commands_are_answered_and_end_of_input_stops(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "demo", "--data", str(tmp_path / "d")],
        cwd=REPO,
        input="tap vias\nstatus\ngateway dwn\nquit\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=100,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "[screen idle]" in out
    assert "no card 'vias'; did you mean 'visa'?" in out
    assert "  state      Idle (screen idle)" in out  # status as readable lines
    assert "no link state 'dwn'; did you mean 'down'?" in out
    assert out.rstrip().endswith("demo stopped")
    assert "Traceback" not in done.stderr
