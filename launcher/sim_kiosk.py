"""`ev-terminal sim-kiosk`: the daemon as its own process, on a simulator that outlives it.

The kiosk runs on the stored simulator (`hardware/sim/stored.py`: meter register, relay,
vehicle and clock kept in files under `DATA/hardware`) and talks to a gateway running
elsewhere (`--gateway URL`). It reads script steps from stdin, one or more a line (the
`simulate` script language, without `gateway down|up`), runs each line until the kiosk settles
and answers `ok` (or `error <why>`) on stdout. Kill it at any moment and start it again on the
same data directory: it recovers as a kiosk does after a power loss. End of input stops it.

`--pause-at POINT:KIND` aims a crash test's kill: when the sender reaches POINT ("committed":
the request is journaled, not sent; "answered": the gateway's answer is in, not journaled) for
a KIND request (authorize, increment, capture, void), the process says `paused POINT KIND
SESSION` and stops there until it is killed. `--threaded` runs the daemon as in service,
on its own threads (`launcher/sim_threads.py`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hardware.sim.contactor import SimContactor
from hardware.sim.display import SimDisplay
from hardware.sim.meter import SimMeter
from hardware.sim.reader import SimReader
from hardware.sim.stored import StoredClock, StoredPlant, StoredVehicle, stored_plant
from launcher.simulate import Simulation, parse_script
from terminal import config as config_mod
from terminal.errors import ConfigError, DirectoryInUse, ScriptError
from terminal.shell.daemon import Daemon
from terminal.shell.dir_lock import DirectoryLock, lock_directories
from terminal.shell.journal import OutboxRow
from terminal.station import SimHardware

HARDWARE_DIR = "hardware"


def stored_hardware(plant: StoredPlant) -> SimHardware:
    """The simulated devices on a plant kept on disk (`stored_plant`), the vehicle too, so a
    kiosk killed and started again finds the car and the meter where they were."""
    return SimHardware(
        plant=plant,
        reader=SimReader(),
        contactor=SimContactor(plant),
        meter=SimMeter(plant),
        vehicle=StoredVehicle(plant),
        display=SimDisplay(),
    )


def record_sessions(plant: StoredPlant, daemon: Callable[[], Daemon]) -> None:
    """Have the plant's relay log name the session each closing served: the kiosk's session
    at the instant it closes the relay (the daemon closes it while performing the actions of
    the step that began or resumed that session, with its new state already in place:
    `Daemon._handle`). Tests credit the energy of each closing to that session's hold."""

    def serving() -> str | None:
        session = daemon().kiosk.session
        return None if session is None else session.session_id

    plant.serving = serving


def _say(line: str) -> None:
    """One answer line to the driving process."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def open_kiosk(
    config: config_mod.Config,
    data_dir: Path,
    gateway_url: str,
    *,
    key_dir: Path | None = None,
    id_prefix: str = "sim",
) -> Simulation:
    """Start (or recover) the kiosk on `data_dir` against the gateway at `gateway_url`;
    DirectoryInUse (before anything is touched) if another process runs on them."""
    locks = lock_directories(data_dir, key_dir)
    try:
        return _open(
            config=config,
            data_dir=data_dir,
            gateway_url=gateway_url,
            key_dir=key_dir,
            id_prefix=id_prefix,
            locks=locks,
        )
    except BaseException:
        for lock in locks:
            lock.release()
        raise


def _open(
    *,
    config: config_mod.Config,
    data_dir: Path,
    gateway_url: str,
    key_dir: Path | None,
    id_prefix: str,
    locks: list[DirectoryLock],
) -> Simulation:
    clock, plant = stored_plant(data_dir / HARDWARE_DIR)
    hardware = stored_hardware(plant)
    sim = Simulation(
        config=config,
        data_dir=data_dir,
        clock=clock,
        gateway_url=gateway_url,
        with_hardware=hardware,
        key_dir=key_dir,
        id_prefix=id_prefix,
        locks=locks,
    )
    record_sessions(plant, lambda: sim.daemon)
    return sim


POINTS = ("committed", "answered")


def pause_at(spec: str) -> tuple[str, str]:
    """`POINT:KIND` of `--pause-at`."""
    point, _, kind = spec.partition(":")
    if point not in POINTS or kind not in ("authorize", "increment", "capture", "void"):
        raise argparse.ArgumentTypeError(f"{spec!r}: POINT:KIND, POINT one of {POINTS}")
    return point, kind


def _pausing(point: str, kind: str) -> Callable[[str, OutboxRow], None]:
    def hook(reached: str, row: OutboxRow) -> None:
        if (reached, row.kind) == (point, kind):
            _say(f"paused {point} {kind} {row.lane}")
            threading.Event().wait()  # until SIGKILL

    return hook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ev-terminal sim-kiosk", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("deploy/terminal.toml"))
    parser.add_argument("--data", type=Path, required=True, help="journal, keys, hardware state")
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--keys", type=Path, default=None, help="the device's key dir")
    parser.add_argument("--id-prefix", default="sim", help="first part of every session id")
    parser.add_argument(
        "--pause-at", type=pause_at, default=None, help="POINT:KIND where to stop (crash tests)"
    )
    parser.add_argument("--threaded", action="store_true", help="Daemon.run on its threads")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="level=%(levelname)s %(message)s"
    )
    try:
        config = config_mod.load(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        return 2
    hook = _pausing(*args.pause_at) if args.pause_at is not None else None
    if args.threaded:
        return _threaded(config, args.data, args.gateway, args.keys, args.id_prefix, hook)
    try:
        sim = open_kiosk(
            config, args.data, args.gateway, key_dir=args.keys, id_prefix=args.id_prefix
        )
    except DirectoryInUse as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 3
    sim.daemon.sender.on_point = hook
    cards = set(sim.profiles)
    _say("ready")
    try:
        for line in sys.stdin:
            try:
                for step in parse_script(line, cards):
                    sim.run_step(step)
            except ScriptError as exc:
                _say(f"error {exc}")
                continue
            _say("ok")
    finally:
        sim.close()
        for part in (sim.clock, sim.hardware.plant):
            if isinstance(part, StoredClock | StoredPlant):
                part.close()
    return 0


def _threaded(  # noqa: PLR0917 - main's parsed arguments, passed on
    config: config_mod.Config,
    data_dir: Path,
    gateway_url: str,
    key_dir: Path | None,
    id_prefix: str,
    hook: Callable[[str, OutboxRow], None] | None,
) -> int:
    from launcher.sim_threads import ThreadedKiosk  # noqa: PLC0415 - only with --threaded

    if key_dir is None:
        sys.stderr.write("error: --threaded needs --keys\n")
        return 2
    try:
        locks = lock_directories(data_dir, key_dir)
    except DirectoryInUse as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 3
    clock, plant = stored_plant(data_dir / HARDWARE_DIR)
    hardware = stored_hardware(plant)
    kiosk = ThreadedKiosk(
        config=config,
        data_dir=data_dir,
        gateway_url=gateway_url,
        key_dir=key_dir,
        hardware=hardware,
        clock=clock,
        id_prefix=id_prefix,
        on_point=hook,
    )
    record_sessions(plant, lambda: kiosk.daemon)
    try:
        kiosk.start()
        _say("ready")
        for line in sys.stdin:
            try:
                kiosk.run_line(line.strip())
            except ScriptError as exc:
                _say(f"error {exc}")
                continue
            _say("ok")
    finally:
        kiosk.stop()
        clock.close()
        plant.close()
        for lock in locks:
            lock.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
