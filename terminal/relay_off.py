"""`ev-terminal relay-off`: drive the contactor enable output low without the daemon.

systemd runs it after the daemon has gone, however it went (`ExecStopPost=` in
systemd/ev-terminal.service: a clean stop, a SIGKILL from the watchdog or the OOM killer, a
SIGABRT, a crash at start-up). Raspberry Pi OS keeps an output line at the level its dead
process left it, so without this the relay would stay enabled until a new daemon builds the
relay, or for good if start-up keeps failing.

It reads only the configuration's `[hardware.gpio]` keys (no keys, no journal, no other
device), so it works when everything else is broken. Exit codes: 0 the output is low (or the
backend has no relay), 1 the line could not be driven, 2 the configuration is bad.
"""

from __future__ import annotations

import logging

from drivers.gpio import drive_low, make_pin_factory
from hardware.ports import DeviceFault
from terminal.config import Config
from terminal.wiring import pi_settings

log = logging.getLogger("ev_terminal.relay_off")

EXIT_OK = 0
EXIT_DEVICE = 1


def relay_off(config: Config) -> int:
    """Drive the relay output low; return the process exit code (see the module docstring).
    A ConfigError propagates (the caller prints it and exits 2)."""
    if config.hardware.backend != "pi":
        log.info("event=relay_off backend=%s result=no_relay", config.hardware.backend)
        return EXIT_OK
    settings = pi_settings(config.hardware)
    pin = settings.contactor.relay_pin
    try:
        factory = make_pin_factory(settings.pin_factory)
    except DeviceFault as exc:
        log.error("event=relay_off pin=%s error=%s", pin, exc)
        return EXIT_DEVICE
    try:
        drive_low(pin, factory)
    except DeviceFault as exc:
        log.error("event=relay_off pin=%s error=%s", pin, exc)
        return EXIT_DEVICE
    finally:
        factory.close()
    log.info("event=relay_off pin=%s result=low", pin)
    return EXIT_OK
