"""`ev-terminal run`: the daemon as a service, on the devices the `[hardware]` section names.

The composition root for production: builds the devices (`wiring.build_devices`), the daemon,
and runs it in the foreground until SIGTERM/SIGINT, when it opens the contactor, stops its
threads within a bounded time and exits. systemd supervises it (see systemd/).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from hardware.clock import SystemClock
from terminal.config import Config
from terminal.console.port import ConsoleThread
from terminal.console.recent_log import RecentLog
from terminal.preflight import preflight
from terminal.shell.dir_lock import lock_directories
from terminal.shell.notify import Notifier
from terminal.station import build_daemon
from terminal.wiring import build_devices

log = logging.getLogger("ev_terminal.service")

# How long a thread may hold the GIL before another that waits gets it (CPython's default is
# 5 ms). The fault inputs' callbacks (RCD trip, emergency stop) open the relay on their own
# thread; a shorter interval bounds how long a busy daemon loop can delay them.
SWITCH_INTERVAL_S = 0.001


EXIT_RESTART = 75  # `reboot` on the console: systemd restarts us (RestartForceExitStatus=75)


def run_service(config: Config) -> int:
    """Run until asked to stop; returns the process exit code."""
    # Keys, then the config's hardware section, before any device opens (see preflight.py);
    # then the devices, the relay first and driven low; the daemon arms the watchdog last.
    key_dir = preflight(config).key_dir
    # One daemon per data and key directory (DirectoryInUse names the holder); the locks go
    # with the process.
    locks = lock_directories(config.data_dir, key_dir)
    try:
        return _run(config, key_dir)
    finally:
        for lock in locks:
            lock.release()


def _run(config: Config, key_dir: Path) -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    clock = SystemClock()
    recent_log = RecentLog()
    logging.getLogger().addHandler(recent_log)  # the console's `log`
    devices = build_devices(config, clock)
    try:
        daemon = build_daemon(
            config=config,
            devices=devices,
            clock=clock,
            gateway_url=config.gateway.url,
            key_dir=key_dir,
            notifier=Notifier.from_environment(),
        )
    except BaseException:
        devices.close()
        raise
    if devices.faults is not None:
        devices.faults.connect(daemon.post)  # fault-input edges now reach the machine
    stopping = threading.Event()
    exit_code = 0

    def _restart() -> None:
        nonlocal exit_code
        exit_code = EXIT_RESTART
        daemon.stop()

    if config.ocpp is not None:
        from terminal.ocpp.wiring import attach_ocpp  # noqa: PLC0415 - only with [ocpp]

        # A Reset from the CSMS restarts the service as the console's `restart` does.
        attach_ocpp(daemon, config, clock, on_reset=_restart)

    console: ConsoleThread | None = None
    if config.console.port is not None:
        try:
            console = ConsoleThread.open(config, daemon, recent_log, _restart)
        except OSError as exc:  # no console must not mean no charging
            log.error("event=console_unavailable port=%s error=%s", config.console.port, exc)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        stopping.set()
        daemon.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info("event=starting station=%s backend=%s", config.station.id, config.hardware.backend)
    if console is not None:
        console.start()
    try:
        daemon.run()
    finally:
        if console is not None:
            console.stop()
        devices.close()
    log.info("event=stopped exit_code=%d", exit_code)
    return exit_code
