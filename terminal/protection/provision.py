"""``ev-terminal provision``: write a simulated fleet's keys (see `keys.provision_fleet`).

    ev-terminal provision --out var/keys --fleet demo --device kiosk-1 --device kiosk-2
    ev-terminal provision ... --tls-host gateway.example   # also the mutual-TLS certificates

The summary names directories and identifiers only, never a key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from terminal.errors import ConfigError, KeyMaterialError
from terminal.protection.certs import provision_tls, revoke
from terminal.protection.dukpt import KeyType
from terminal.protection.keys import provision_fleet


def build_parser() -> argparse.ArgumentParser:
    """The subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="ev-terminal provision",
        description="Write a fleet's DUKPT and token keys: one gateway dir, one dir per device.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--fleet", required=True, help="fleet id")
    parser.add_argument(
        "--device",
        required=True,
        action="append",
        dest="devices",
        metavar="NAME",
        help="device name (repeat for each kiosk)",
    )
    parser.add_argument(
        "--aes",
        type=int,
        choices=(128, 192, 256),
        default=128,
        help="BDK and working key size in bits (default 128)",
    )
    parser.add_argument(
        "--tls-host",
        action="append",
        dest="tls_hosts",
        metavar="HOST",
        default=[],
        help="also write mutual-TLS certificates: the gateway's host name or IP (repeatable)",
    )
    parser.add_argument(
        "--revoke",
        action="append",
        default=[],
        metavar="NAME",
        help="add a device's TLS certificate to the fleet's CRL (gateway/tls-crl.pem)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the subcommand; 0 on success, 1 when keys could not be written, 2 on bad usage."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message already
        return exc.code if isinstance(exc.code, int) else 2
    key_type = KeyType.from_label(f"AES-{args.aes}")
    try:
        fleet = provision_fleet(
            args.out, fleet_id=args.fleet, devices=args.devices, key_type=key_type
        )
        if args.tls_hosts:
            provision_tls(
                args.out, fleet=args.fleet, devices=args.devices, server_hosts=args.tls_hosts
            )
        revoked = [(name, revoke(args.out, name)) for name in args.revoke]
    except (ConfigError, KeyMaterialError, OSError) as exc:
        sys.stderr.write(f"ev-terminal provision: {exc}\n")
        return 1
    lines = [
        f"fleet {fleet.fleet_id}: BDK ID {fleet.bdk_id}, {fleet.key_type.label}",
        f"gateway keys: {fleet.gateway_dir}",
    ]
    lines += [
        f"device {name}: {path} (initial key ID {fleet.initial_key_ids[name]})"
        for name, path in fleet.device_dirs.items()
    ]
    if args.tls_hosts:
        lines.append(f"TLS: CA and CRL in {fleet.gateway_dir}, a client certificate per device")
    lines += [f"revoked {name}: serial {serial:x}" for name, serial in revoked]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
