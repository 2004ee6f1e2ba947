"""One process per data directory and key directory, with real processes: the second one
exits at once with a message naming the holder, touching nothing; a killed holder's lock goes
with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from terminal.protection.keys import provision_fleet
from tests.crash.processes import BIN, ROOT, KioskProcess

CONFIG = ROOT / "deploy" / "terminal.toml"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: the kiosk starts offline


def _kiosk(data: Path, keys: Path) -> KioskProcess:
    return KioskProcess(
        config=CONFIG, data=data, gateway_url=NOWHERE, key_dir=keys, id_prefix="lock"
    )


def _second(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _sim_kiosk(data: Path, keys: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launcher.sim_kiosk",
        "--config",
        str(CONFIG),
        "--data",
        str(data),
        "--gateway",
        NOWHERE,
        "--keys",
        str(keys),
    ]


def test_a_second_process_on_the_same_directories_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    fleet = provision_fleet(tmp_path / "keys", fleet_id="f", devices=["K1", "K2"])
    data = tmp_path / "K1"
    first = _kiosk(data, fleet.device_dirs["K1"])
    first.start()
    try:
        assert first.proc is not None
        holder = first.proc.pid
        journal_before = (data / "journal.sqlite3").read_bytes()

        # The same data and key directories.
        again = _second(_sim_kiosk(data, fleet.device_dirs["K1"]))
        assert again.returncode == 3, again.stderr
        assert f"{data} is in use by process {holder}" in again.stderr

        # Another data directory, but the first kiosk's keys: its DUKPT registers.
        keys_taken = _second(_sim_kiosk(tmp_path / "other", fleet.device_dirs["K1"]))
        assert keys_taken.returncode == 3, keys_taken.stderr
        assert f"{fleet.device_dirs['K1']} is in use by process {holder}" in keys_taken.stderr
        assert not (tmp_path / "other" / "journal.sqlite3").exists()

        # `simulate` and `demo` on the data directory.
        script = tmp_path / "idle.txt"
        script.write_text("expect idle\n")
        simulate = _second(
            [
                str(BIN / "ev-terminal"),
                "simulate",
                "--config",
                str(CONFIG),
                "--data",
                str(data),
                "--script",
                str(script),
            ]
        )
        assert simulate.returncode == 3, simulate.stderr
        assert f"error: {data} is in use by process {holder}" in simulate.stderr
        demo = _second(
            [str(BIN / "ev-terminal"), "demo", "--config", str(CONFIG), "--data", str(data)]
        )
        assert demo.returncode == 3, demo.stderr
        assert f"error: {data} is in use by process {holder}" in demo.stderr

        assert (data / "journal.sqlite3").read_bytes() == journal_before
        first.step("tap visa")  # the holder is unaffected
    finally:
        first.kill()

    # The lock went with the killed process: the kiosk starts again on its directories.
    first.start()
    first.stop()
