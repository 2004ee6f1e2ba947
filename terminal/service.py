"""`ev-terminal run`: the daemon as a service, on the devices the `[hardware]` section names.

The composition root for production: builds the devices (`wiring.build_devices`), the daemon,
and runs it in the foreground until SIGTERM/SIGINT, when it opens the contactor, stops its
threads within a bounded time and exits. systemd supervises it (see systemd/).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from hardware.clock import SystemClock
from terminal.config import Config
from terminal.errors import ConfigError
from terminal.station import build_daemon
from terminal.wiring import build_devices

log = logging.getLogger("ev_terminal.service")


def run_service(config: Config) -> int:
    """Run until asked to stop; returns the process exit code."""
    if config.keys_dir is None:
        raise ConfigError("data.keys_dir", "missing: the device key directory is required to run")
    clock = SystemClock()
    devices = build_devices(config, clock)
    try:
        daemon = build_daemon(
            config=config,
            devices=devices,
            clock=clock,
            gateway_url=config.gateway.url,
            key_dir=config.keys_dir,
        )
    except BaseException:
        devices.close()
        raise
    if devices.faults is not None:
        devices.faults.connect(daemon.post)  # fault-input edges now reach the machine
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        stopping.set()
        daemon.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info("event=starting station=%s backend=%s", config.station.id, config.hardware.backend)
    try:
        daemon.run()
    finally:
        devices.close()
    log.info("event=stopped")
    return 0
