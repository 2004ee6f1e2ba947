"""An existing fleet's life cycle: add a device, revoke one, renew the CRL.

`keys.provision_fleet` and `certs.provision_tls` create a fleet once; these change it
afterwards without touching any key it already holds:

- `add_devices` gives each new device what the first ones got: its DUKPT Initial Key (the next
  unused derivation ID under the fleet's BDK), a copy of the fleet token key, an OCMF reading
  key, and, when the fleet has a TLS CA, a client certificate signed by that CA. The device is
  added to the gateway's ``fleet.json`` last, so a half-written device is never the fleet's.
- `revoke_devices` adds each device's client certificate to the CRL (read again by the gateway
  on its next connection, by nginx on reload) and moves the device from ``devices`` to
  ``revoked`` in ``fleet.json``, so the gateway refuses its card data once it reloads its keys.
  A derivation ID is never given out twice, even after a revocation.
- `renew_crl` re-signs the CRL with a fresh nextUpdate before the old one lapses (a lapsed CRL
  refuses every terminal, RFC 5280 5.1.2.5), keeping its entries and their dates.

Each refuses with `FleetError` and changes nothing when the fleet is missing, a device already
exists, or a device is unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.errors import FleetError
from terminal.protection import certs
from terminal.protection.dukpt import InitialKeyId
from terminal.protection.keys import (
    DEVICES_DIR,
    FLEET_FILE,
    GATEWAY_DIR,
    check_device_names,
    load_gateway_keys,
    write_device_keys,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AddedDevice:
    """Where a new device's keys are and the identifiers it was given (no key)."""

    name: str
    key_dir: Path
    initial_key_id: str
    tls_serial: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedDevice:
    """A revoked device and the serial number of its certificate now on the CRL (None: it had
    no TLS certificate, only its card data is refused)."""

    name: str
    tls_serial: int | None


def _fleet_file(root: Path) -> Path:
    path = root / GATEWAY_DIR / FLEET_FILE
    if not path.is_file():
        raise FleetError(
            f"{root}: no fleet here ({GATEWAY_DIR}/{FLEET_FILE} missing); "
            "create one with --fleet and --device"
        )
    return path


def _read_fleet(root: Path) -> dict[str, Any]:
    path = _fleet_file(root)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise FleetError(f"{path}: malformed fleet file (no devices)")
    data.setdefault("revoked", {})
    data.setdefault("ocmf_keys", {})
    return data


def _write_fleet(root: Path, fleet: dict[str, Any]) -> None:
    """Replace fleet.json atomically (temp file 0600, fsync, rename, fsync dir)."""
    path = _fleet_file(root)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(fleet, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _next_derivation_id(fleet: dict[str, Any]) -> int:
    used = [*fleet["devices"].values(), *fleet["revoked"].values()]
    numbers = [int.from_bytes(InitialKeyId.from_hex(ikid).derivation_id, "big") for ikid in used]
    return max(numbers, default=0) + 1


def add_devices(root: Path, devices: Sequence[str]) -> list[AddedDevice]:
    """Add `devices` to the fleet under `root` (see the module docstring)."""
    check_device_names(devices)
    fleet = _read_fleet(root)
    gateway = load_gateway_keys(root / GATEWAY_DIR)  # also checks the key files' modes
    for name in devices:
        if name in fleet["devices"] or name in fleet["revoked"]:
            state = "revoked" if name in fleet["revoked"] else "in the fleet"
            raise FleetError(f"device {name!r} already exists ({state}); choose another name")
        if (root / DEVICES_DIR / name).exists():
            raise FleetError(f"{root / DEVICES_DIR / name}: already exists; choose another name")
    ca = certs.load_ca(root) if certs.has_ca(root) else None
    number = _next_derivation_id(fleet)
    added = []
    for name in devices:
        ikid = InitialKeyId(bdk_id=gateway.bdk_id, derivation_id=number.to_bytes(4, "big"))
        number += 1
        key_dir = root / DEVICES_DIR / name
        fleet["ocmf_keys"][name] = write_device_keys(
            key_dir, bdk=gateway.bdk, ikid=ikid, token_key=gateway.token_key.secret
        )
        serial = certs.issue_client(root, ca, name).serial_number if ca else None
        fleet["devices"][name] = ikid.hex()
        _write_fleet(root, fleet)
        added.append(
            AddedDevice(name=name, key_dir=key_dir, initial_key_id=ikid.hex(), tls_serial=serial)
        )
    return added


def revoke_devices(
    root: Path, devices: Sequence[str], *, now: datetime | None = None
) -> list[RevokedDevice]:
    """Revoke `devices` of the fleet under `root` (see the module docstring)."""
    fleet = _read_fleet(root)
    for name in devices:
        if name in fleet["revoked"]:
            raise FleetError(f"device {name!r} is already revoked")
        if name not in fleet["devices"]:
            raise FleetError(f"device {name!r} is not in the fleet")
    if len(set(devices)) != len(devices):
        raise FleetError("device names repeat")
    serials = {name: certs.client_serial(root, name) for name in devices}
    on_crl = [serial for serial in serials.values() if serial is not None]
    if on_crl:
        # The CRL first: if the fleet file update fails the certificate is refused already.
        certs.resign_crl(root, add=on_crl, now=now)
    for name in devices:
        fleet["revoked"][name] = fleet["devices"].pop(name)
    _write_fleet(root, fleet)
    return [RevokedDevice(name=name, tls_serial=serials[name]) for name in devices]


def renew_crl(root: Path, *, now: datetime | None = None, days: int = certs.CRL_DAYS) -> datetime:
    """Re-sign the fleet's CRL for `days` more; returns its new nextUpdate."""
    _fleet_file(root)
    if not certs.has_ca(root):
        raise FleetError(f"{root}: the fleet has no TLS CA (provision it with --tls-host)")
    if days < 1:
        raise FleetError(f"--crl-days: {days} is not a number of days (1 or more)")
    renewed = certs.resign_crl(root, now=now, days=days)
    next_update = renewed.next_update_utc
    assert next_update is not None  # `certs.crl` always sets one
    return next_update
