"""``ev-terminal set-technician-pin``: set the per-device technician PIN for the console.

    sudo -u ev-terminal ev-terminal set-technician-pin --config /etc/ev-terminal/terminal.toml

Asks for the PIN twice (no echo), or reads one line from standard input with ``--stdin`` (for
provisioning scripts). Stores only its scrypt hash (see `credential.py`) in the config's PIN
file, and clears a lock-out. Run it as the service user, so the file is the daemon's.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from terminal import config as config_mod
from terminal.arguments import EXIT_USAGE, ArgumentParser
from terminal.console.credential import LOCKOUT_FILE_NAME, Lockout, LockoutPolicy, set_pin
from terminal.errors import ConfigError, KeyMaterialError


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="ev-terminal set-technician-pin",
        description="Set the technician PIN for the serial console (stored as a scrypt hash).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="the kiosk's config (names the PIN file)")
    where.add_argument("--file", type=Path, help="write this PIN file instead")
    parser.add_argument("--stdin", action="store_true", help="read the PIN from standard input")
    return parser


def _read_pin(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    pin = getpass.getpass("technician PIN: ")
    if getpass.getpass("again: ") != pin:
        raise ConfigError("technician PIN", "the two entries differ")
    return pin


def main(argv: list[str]) -> int:
    """0 on success, 1 if the PIN could not be set, 2 on bad usage or a bad config."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not args.stdin and not sys.stdin.isatty():
        # getpass would fall back to reading the PIN, echoed, from whatever stdin is.
        sys.stderr.write(
            "ev-terminal set-technician-pin: no terminal to ask for the PIN on; use --stdin\n"
        )
        return EXIT_USAGE
    lockout: Lockout | None = None
    try:
        if args.config is not None:
            cfg = config_mod.load(args.config)
            path = cfg.pin_file
            lockout = Lockout(cfg.data_dir / LOCKOUT_FILE_NAME, LockoutPolicy())
        else:
            path = args.file
        set_pin(path, _read_pin(args.stdin))
        if lockout is not None:
            lockout.reset()
    except ConfigError as exc:
        sys.stderr.write(f"ev-terminal set-technician-pin: {exc}\n")
        return 2
    except (KeyMaterialError, OSError) as exc:
        sys.stderr.write(f"ev-terminal set-technician-pin: {exc}\n")
        return 1
    sys.stdout.write(f"technician PIN set: {path} (scrypt hash only)\n")
    return 0
