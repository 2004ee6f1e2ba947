"""`make demo`: the kiosk on the simulator with an embedded gateway, interactive.

The daemon runs for real (its threads, a clock running `speed` times faster); you type the
driver's and the car's actions, and the screen the driver would see is drawn here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from gateway.server import EmbeddedGateway
from hardware.clock import ScaledClock
from hardware.ports import Frame
from hardware.sim.card_script import load_profiles
from hardware.sim.display import SimDisplay, render_text
from terminal.config import Config
from terminal.core.events import FaultCleared, FaultRaised, OutOfServiceChanged
from terminal.shell.dir_lock import lock_directories
from terminal.station import SimHardware, build_daemon, sim_keys

READY_TIMEOUT_S = 15.0

HELP = """commands:
  tap CARD        present a card ({cards})
  plug | unplug   the cable
  ev charge|pause|done   what the car asks for
  fault NAME | clear NAME   e.g. rcd, estop, meter, contactor_welded
  gateway down|up   cut or restore the link to the gateway
  oos on|off      out of service
  status          what the kiosk is doing
  help | quit"""


def main(config: Config, data_dir: Path, *, speed: float) -> int:
    locks = lock_directories(data_dir)  # one kiosk per data dir (DirectoryInUse names it)
    try:
        locks += lock_directories(sim_keys(data_dir, config.station.id)[0])
        return _run(config, data_dir, speed=speed)
    finally:
        for lock in locks:
            lock.release()


def _run(config: Config, data_dir: Path, *, speed: float) -> int:
    clock = ScaledClock(speed)
    lock = threading.Lock()

    def draw(frame: Frame) -> None:
        with lock:
            print("\n" + render_text(frame), flush=True)

    hardware = SimHardware.build(clock, SimDisplay(on_show=draw))
    key_dir, gateway_keys = sim_keys(data_dir, config.station.id)
    gateway = EmbeddedGateway(data_dir / "gateway.sqlite3", key_dir=gateway_keys)
    gateway.up()
    config = replace(
        config,
        data_dir=data_dir,
        gateway=replace(config.gateway, receipt_url=gateway.url + "/receipts"),
    )
    daemon = build_daemon(
        config=config,
        devices=hardware.devices(),
        clock=clock,
        gateway_url=gateway.url,
        key_dir=key_dir,
    )
    profiles = load_profiles()
    print(f"ev-terminal demo: gateway on {gateway.url}, time runs x{speed:g}")
    print(HELP.format(cards=", ".join(sorted(profiles))))
    loop = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    loop.start()
    # Take commands once the kiosk is up (its first screen is drawn), so typed-ahead or piped
    # steps are not lost to start-up.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while daemon.executor.screen is None and loop.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        while True:
            try:
                line = input("> ").strip()
            except EOFError:
                break
            words = line.split()
            if not words:
                continue
            verb, args = words[0], words[1:]
            stamp = daemon.stamp
            if verb in ("quit", "exit"):
                break
            if verb == "help":
                print(HELP.format(cards=", ".join(sorted(profiles))))
            elif verb == "tap" and args and args[0] in profiles:
                hardware.reader.present(profiles[args[0]].card())
            elif verb == "plug":
                hardware.vehicle.plug()
            elif verb == "unplug":
                hardware.vehicle.unplug()
            elif verb == "ev" and args and args[0] in ("charge", "pause", "done"):
                getattr(hardware.vehicle, args[0])()
            elif verb == "fault" and args:
                daemon.post(FaultRaised(fault=args[0], **stamp()))
            elif verb == "clear" and args:
                daemon.post(FaultCleared(fault=args[0], **stamp()))
            elif verb == "gateway" and args and args[0] in ("down", "up"):
                (gateway.down if args[0] == "down" else gateway.up)()
            elif verb == "oos" and args and args[0] in ("on", "off"):
                daemon.post(OutOfServiceChanged(on=args[0] == "on", **stamp()))
            elif verb == "status":
                print(daemon.status())
            else:
                print("unknown command; type help")
    finally:
        daemon.stop()
        loop.join(timeout=5)
        gateway.close()
    return 0
