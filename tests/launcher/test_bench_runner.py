"""`make bench` runs every benchmark, even when one of them ends with SystemExit or raises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import sys\nfrom bench.__main__ import run_all\n"
        "raise SystemExit(run_all('fakebench', sys.argv[1:]))\n"
    )
    (pkg / "bench_a_exits.py").write_text(
        "if __name__ == '__main__':\n    print('a ran')\n    raise SystemExit('target missed')\n"
    )
    (pkg / "bench_b_ok.py").write_text(
        "import sys\nif __name__ == '__main__':\n    print('b ran', sys.argv[0])\n"
        "    raise SystemExit(0)\n"
    )
    (pkg / "bench_c_raises.py").write_text(
        "if __name__ == '__main__':\n    print('c ran')\n    raise RuntimeError('device gone')\n"
    )
    (pkg / "bench_d_ok.py").write_text(
        "import sys\nif __name__ == '__main__':\n    print('d ran', sys.argv[1:])\n"
    )
    return tmp_path


def _run(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env_path = f"{where}:{REPO}"
    return subprocess.run(
        [sys.executable, "-m", "fakebench", *args],
        capture_output=True,
        text=True,
        cwd=where,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def test_every_benchmark_runs_after_one_exits_or_raises(tmp_path: Path) -> None:
    done = _run(_package(tmp_path))
    out = done.stdout
    for line in ("a ran", "b ran bench_b_ok", "c ran", "d ran"):
        assert line in out
    assert "!! bench_a_exits failed: target missed" in out
    assert "!! bench_c_raises failed: RuntimeError: device gone" in out
    assert "== 4 benchmarks, 2 failed" in out
    assert "RuntimeError: device gone" in done.stderr  # its traceback, for the developer
    assert done.returncode == 1


def test_named_benchmarks_only_and_unknown_names(tmp_path: Path) -> None:
    where = _package(tmp_path)
    done = _run(where, "d_ok", "bench_b_ok")
    assert "d ran" in done.stdout
    assert "b ran" in done.stdout
    assert "a ran" not in done.stdout
    assert "== 2 benchmarks, 0 failed" in done.stdout
    assert done.returncode == 0
    with_options = _run(where, "d_ok", "--full", "--workers", "1")
    assert "d ran ['--full', '--workers', '1']" in with_options.stdout
    assert with_options.returncode == 0
    unnamed = _run(where, "--full")
    assert unnamed.returncode == 2
    assert "name them first" in unnamed.stderr
    unknown = _run(where, "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "no benchmark named bench_nope"
