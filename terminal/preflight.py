"""What `ev-terminal run` needs, checked before any device is opened.

Start-up order (docs/operations.md, "Start-up and fail-safe layers"): keys, then the
configuration's hardware section, then the contactor output low, then the other devices, then
the hardware watchdog, then READY. This module is the first two steps (and the data dir),
one function (`preflight`) that `run` and `check-config` both call, so a missing key dir, a bad
key mode or two devices on one serial port is a config error that names the key and exits
non-zero, never a restart loop with an armed watchdog, and `check-config` says "ok" only for a
config `run` accepts.

Serial ports are compared after resolving symlinks where the device exists (on a Pi,
`/dev/serial0` is a link to `ttyAMA0` or `ttyS0` depending on the model and on whether
Bluetooth holds the PL011), so "serial0" and "ttyAMA0" are seen as the same port. The meter and
the EVSE board may share one port: that is one RS-485 line (checked by `wiring.pi_settings`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from drivers.nfc_reader import resolve_port
from terminal.config import Config
from terminal.errors import ConfigError, KeyMaterialError
from terminal.protection.keys import load_device_keys
from terminal.wiring import PiSettings, pi_settings


def check_keys(config: Config) -> Path:
    """The device key dir: set, a directory only its owner may enter, every key file readable
    and 0600 (`load_device_keys`). ConfigError naming `data.keys_dir` otherwise."""
    key_dir = config.keys_dir
    if key_dir is None:
        raise ConfigError("data.keys_dir", "missing: the device key directory is required to run")
    try:
        info = key_dir.stat()
    except OSError as exc:
        raise ConfigError("data.keys_dir", f"{key_dir}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError("data.keys_dir", f"{key_dir}: not a directory")
    if info.st_mode & 0o077:
        raise ConfigError(
            "data.keys_dir",
            f"{key_dir} is open to group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it must be 0700 (chmod 700 {key_dir})",
        )
    try:
        load_device_keys(key_dir)
    except KeyMaterialError as exc:
        raise ConfigError("data.keys_dir", str(exc)) from None
    return key_dir


def _same_port(path: str) -> str:
    return os.path.realpath(path) if os.path.exists(path) else os.path.normpath(path)


def check_ports(settings: PiSettings, console_port: str | None) -> None:
    """No two devices on one serial port, but for the meter and EVSE board's shared line."""
    uses: list[tuple[str, str]] = [("hardware.reader", resolve_port(settings.reader))]
    uses.append(("hardware.meter.port", settings.meter.port))
    vehicle_port = getattr(settings.vehicle, "port", None)
    if vehicle_port is not None and not settings.shared_line:
        uses.append(("hardware.vehicle.port", vehicle_port))
    if console_port is not None:
        uses.append(("console.port", console_port))
    seen: dict[str, str] = {}
    for key, port in uses:
        real = _same_port(port)
        if real in seen:
            raise ConfigError(key, f"{port} is already used by {seen[real]}")
        seen[real] = key


def check_hardware(config: Config) -> PiSettings | None:
    """The pi backend's driver settings, validated, ports checked; None for the simulator."""
    if config.hardware.backend != "pi":
        return None
    settings = pi_settings(config.hardware)
    check_ports(settings, config.console.port)
    return settings


def check_data_dir(config: Config) -> Path:
    """The data dir (`run` creates it when it is missing): a directory this process may write,
    or a path whose nearest existing parent is one. ConfigError naming `data.dir` otherwise."""
    data_dir = config.data_dir
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == data_dir else f"is under {existing}, which is"
        raise ConfigError("data.dir", f"{data_dir} {what} not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == data_dir else f" (cannot create it in {existing})"
        raise ConfigError("data.dir", f"{data_dir} is not writable{where}")
    return data_dir


def check_ocpp_certificate(config: Config) -> None:
    """Security profile 3: the kiosk replaces its client certificate and key when the CSMS
    signs a renewal (OCPP 2.1 A02, A03), each by a temporary file renamed over it, so their
    directories must be writable by this process; under the shipped unit
    (`ProtectSystem=strict`) that is /var/lib/ev-terminal only. ConfigError naming
    `ocpp.cert_file` or `ocpp.key_file` otherwise: a certificate that cannot be renewed
    stops the kiosk from reaching its CSMS the day it expires."""
    ocpp = config.ocpp
    if ocpp is None or ocpp.security_profile != 3:
        return
    for key, path in (("cert_file", ocpp.cert_file), ("key_file", ocpp.key_file)):
        if path is not None and not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"ocpp.{key}",
                f"{path.parent} is not writable: a renewed certificate could not replace "
                f"{path.name} (keep it under /var/lib/ev-terminal, e.g. /var/lib/ev-terminal/ocpp)",
            )


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the checks found, for `run` to use."""

    key_dir: Path
    settings: PiSettings | None  # None for the simulator


def preflight(config: Config) -> Preflight:
    """Everything `run` checks before it opens a device, in its order: the keys, the data
    dir, then the hardware. `run` and `check-config` both call this, so they cannot drift."""
    key_dir = check_keys(config)
    check_data_dir(config)
    check_ocpp_certificate(config)
    return Preflight(key_dir=key_dir, settings=check_hardware(config))
