"""``ev-terminal provision``: create a fleet's keys, then add, revoke and renew.

    ev-terminal provision --out var/keys --fleet demo --device kiosk-1 --device kiosk-2
    ev-terminal provision ... --tls-host gateway.example   # also the mutual-TLS certificates
    ev-terminal provision --out var/keys --add kiosk-3      # a new device in the fleet
    ev-terminal provision --out var/keys --revoke kiosk-2   # onto the CRL, out of fleet.json
    ev-terminal provision --out var/keys --renew-crl        # re-sign the CRL before it lapses

Creating refuses an existing fleet; adding, revoking and renewing need one and never replace
a key it holds (`terminal.protection.fleet`). The summary names directories, identifiers
and serial numbers only, never a key.

Exit status: 0 done, 1 keys could not be written, 2 bad usage (a missing fleet, a device
that already exists, an unknown device included; a refusal changes nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from terminal.arguments import ArgumentParser
from terminal.errors import ConfigError, FleetError, KeyMaterialError
from terminal.protection.certs import CRL_DAYS, provision_tls
from terminal.protection.dukpt import KeyType
from terminal.protection.fleet import add_devices, renew_crl, revoke_devices
from terminal.protection.keys import provision_fleet


def build_parser() -> ArgumentParser:
    """The subcommand's arguments."""
    parser = ArgumentParser(
        prog="ev-terminal provision",
        description=(
            "Write a fleet's keys (one gateway dir, one dir per device), or change an "
            "existing fleet: add devices, revoke devices, renew the CRL."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="the fleet's key directory")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--fleet", help="create a new fleet with this id (needs --device)")
    action.add_argument(
        "--add",
        action="append",
        metavar="NAME",
        help="add a device to the existing fleet (repeatable)",
    )
    action.add_argument(
        "--revoke",
        action="append",
        metavar="NAME",
        help="revoke a device: its certificate onto the CRL, its card data refused (repeatable)",
    )
    action.add_argument(
        "--renew-crl",
        action="store_true",
        help="re-sign the fleet's CRL with a new nextUpdate, keeping its entries",
    )
    parser.add_argument(
        "--device",
        action="append",
        dest="devices",
        default=[],
        metavar="NAME",
        help="with --fleet: device name (repeat for each kiosk)",
    )
    parser.add_argument(
        "--aes",
        type=int,
        choices=(128, 192, 256),
        default=128,
        help="with --fleet: BDK and working key size in bits (default 128)",
    )
    parser.add_argument(
        "--tls-host",
        action="append",
        dest="tls_hosts",
        metavar="HOST",
        default=[],
        help="with --fleet: also write mutual-TLS certificates: the gateway's host name or IP "
        "(repeatable)",
    )
    parser.add_argument(
        "--crl-days",
        type=int,
        default=CRL_DAYS,
        metavar="DAYS",
        help=f"with --renew-crl: days until the new nextUpdate (default {CRL_DAYS})",
    )
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fleet is not None and not args.devices:
        parser.error("--fleet needs at least one --device")
    if args.fleet is None and (args.devices or args.tls_hosts or args.aes != 128):
        parser.error("--device, --tls-host and --aes only go with --fleet (a new fleet)")
    if not args.renew_crl and args.crl_days != CRL_DAYS:
        parser.error("--crl-days only goes with --renew-crl")
    return args


def _create(args: argparse.Namespace) -> list[str]:
    key_type = KeyType.from_label(f"AES-{args.aes}")
    fleet = provision_fleet(args.out, fleet_id=args.fleet, devices=args.devices, key_type=key_type)
    if args.tls_hosts:
        provision_tls(args.out, fleet=args.fleet, devices=args.devices, server_hosts=args.tls_hosts)
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
    return lines


def _change(args: argparse.Namespace) -> list[str]:
    if args.add:
        return [
            f"added {d.name}: {d.key_dir} (initial key ID {d.initial_key_id}"
            + (f", TLS certificate serial {d.tls_serial:x})" if d.tls_serial else ", no TLS)")
            for d in add_devices(args.out, args.add)
        ]
    if args.revoke:
        return [
            f"revoked {d.name}: "
            + (f"serial {d.tls_serial:x} on the CRL" if d.tls_serial else "no TLS certificate")
            + ", card data refused"
            for d in revoke_devices(args.out, args.revoke)
        ]
    next_update = renew_crl(args.out, days=args.crl_days)
    return [f"CRL renewed: next update {next_update.isoformat()}"]


def main(argv: list[str]) -> int:
    """Run the subcommand; 0 on success, 1 when keys could not be written, 2 on bad usage."""
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse has printed the usage message already
        return exc.code if isinstance(exc.code, int) else 2
    try:
        lines = _create(args) if args.fleet is not None else _change(args)
    except (FleetError, ConfigError) as exc:
        sys.stderr.write(f"ev-terminal provision: {exc}\n")
        return 2
    except (KeyMaterialError, OSError, ValueError) as exc:
        sys.stderr.write(f"ev-terminal provision: {exc}\n")
        return 1
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
