"""`ev-terminal`: the one entry point, with subcommands.

A user error (a missing or invalid argument, a file that is not there, a bad config) is one
line on stderr naming the problem and exit 2, and nothing is created before the arguments and
the config have been checked. Ctrl-C ends any subcommand with "interrupted" and exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from terminal import config as config_mod
from terminal.arguments import EXIT_USAGE, ArgumentParser, integer_in, number_in
from terminal.errors import ConfigError, DirectoryInUse

EXIT_CONFIG = EXIT_USAGE
EXIT_IN_USE = 3  # another process holds the data or key directory
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
DEMO_SPEED_MAX = 3600.0  # an hour a second: timers still fire in order, screens flash by


def _setup_logging(verbose: bool) -> None:
    # One event a line, key=value, to stdout (journald adds the time and unit).
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.DEBUG if verbose else logging.INFO,
        format="level=%(levelname)s logger=%(name)s %(message)s",
    )


def _load(path: Path) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _check_config(path: Path) -> int:
    """Everything `run` checks before it opens a device (`terminal.preflight.preflight`, the
    very function `run` calls): the config, the key dir, the data dir, the hardware."""
    from terminal.preflight import preflight  # noqa: PLC0415 - drivers

    cfg = _load(path)
    try:
        preflight(cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"ok: {path} (station {cfg.station.id}, backend {cfg.hardware.backend})")
    return 0


def _script(parser: ArgumentParser, path: Path) -> str:
    """The script's text, or one line saying why it cannot be read."""
    if not path.exists():
        parser.fail(f"--script {path}: no such file")
    if not path.is_file():
        parser.fail(f"--script {path}: not a file")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        parser.fail(f"--script {path}: cannot read: {exc.strerror}")
    except UnicodeDecodeError:
        parser.fail(f"--script {path}: not UTF-8 text")


def _data_dir(parser: ArgumentParser, path: Path | None) -> None:
    """A data dir that exists must be a directory (it is created later, once all is checked)."""
    if path is not None and path.exists() and not path.is_dir():
        parser.fail(f"--data {path}: not a directory")


def _files(parser: ArgumentParser, **flags: Path | None) -> None:
    """Each file given (`--cert` as `cert=...`) must be there before a server starts."""
    for name, path in flags.items():
        if path is not None and not path.is_file():
            parser.fail(f"--{name.replace('_', '-')} {path}: no such file")


def _lightning_wallet(
    parser: ArgumentParser, url: str | None, key_file: Path | None
) -> Callable[[str], object] | None:
    """The driver's Lightning wallet for `pay qr lightning`: an LNbits wallet, by its
    instance's URL and its admin key (read from a file, never the command line)."""
    if url is None and key_file is None:
        return None
    if url is None or key_file is None:
        parser.fail("--lightning-wallet and --lightning-wallet-key go together")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.fail(f"--lightning-wallet {url}: not an http(s) URL")
    try:
        key = key_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        parser.fail(f"--lightning-wallet-key {key_file}: cannot read")
    if not key or not key.isalnum():
        parser.fail(f"--lightning-wallet-key {key_file}: not an LNbits key")
    from launcher.simulate import lnbits_wallet  # noqa: PLC0415 - heavy imports

    return lnbits_wallet(url, key)


# What a socket's bind says when the address is the operator's to change.
_LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


@contextlib.contextmanager
def _listening(parser: ArgumentParser, host: str, port: int) -> Iterator[None]:
    """A server that cannot bind its address ends with one line naming it."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        parser.fail(f"cannot listen on {host}:{port}: {os.strerror(exc.errno)}")


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; its exit status."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(args_in: list[str]) -> int:
    if args_in and args_in[0] == "price":
        from terminal.tariff.cli import main as price_main  # noqa: PLC0415 - optional path

        return int(price_main(args_in[1:]))
    if args_in and args_in[0] == "provision":
        from terminal.protection.provision import main as provision_main  # noqa: PLC0415

        return int(provision_main(args_in[1:]))
    if args_in and args_in[0] == "gateway":
        from launcher.gateway_cli import main as gateway_main  # noqa: PLC0415 - gateway extra

        # Alembic announces its plugins at INFO when imported: no event for the operator, and
        # it would come before the one line of a usage error.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

        return int(gateway_main(args_in[1:]))
    if args_in and args_in[0] == "set-technician-pin":
        from terminal.console.set_pin import main as set_pin_main  # noqa: PLC0415

        return int(set_pin_main(args_in[1:]))

    parser = ArgumentParser(
        prog="ev-terminal",
        description="Payment-terminal firmware for an EV charger kiosk, and its gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check-config", help="check a config file and everything `run` needs before it starts"
    )
    p.add_argument("config", type=Path)

    p = sub.add_parser(
        "relay-off",
        help="drive the contactor relay output low without the daemon (systemd ExecStopPost)",
    )
    p.add_argument("--config", type=Path, default=Path("/etc/ev-terminal/terminal.toml"))

    p = sub.add_parser("run", help="run the kiosk daemon on the configured hardware")
    p.add_argument("--config", type=Path, default=Path("/etc/ev-terminal/terminal.toml"))
    p.add_argument("--verbose", action="store_true")

    p = sub.add_parser("simulate", help="run a script on the simulator with an embedded gateway")
    p.add_argument("--config", type=Path, default=Path("deploy/terminal.toml"))
    p.add_argument("--script", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="one JSON object per finished session")
    p.add_argument("--data", type=Path, default=None, help="data dir (default: a new temp dir)")
    p.add_argument(
        "--gateway-db",
        default=None,
        metavar="URL",
        help="the embedded gateway's database (default: SQLite in the data dir)",
    )
    p.add_argument(
        "--csms",
        default=None,
        metavar="URL",
        help="also report to this OCPP 2.1 CSMS (ws://, no auth; or [ocpp] with this url)",
    )
    p.add_argument(
        "--processors",
        type=Path,
        default=None,
        metavar="FILE",
        help="the embedded gateway's processor configuration (as `gateway --processors`)",
    )
    p.add_argument(
        "--lightning-wallet",
        default=None,
        metavar="URL",
        help="the LNbits instance whose wallet pays `pay qr lightning`'s invoices "
        "(with --lightning-wallet-key)",
    )
    p.add_argument(
        "--lightning-wallet-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="that LNbits wallet's admin key, in a file",
    )

    p = sub.add_parser("csms", help="run a small reference OCPP 2.1 CSMS (demo and tests)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=integer_in(0, 65535), default=9000)
    p.add_argument("--station", default=None, help="the station id the password is for")
    p.add_argument("--password-file", type=Path, default=None, help="basic auth (profiles 1-2)")
    p.add_argument("--cert", type=Path, default=None, help="TLS server certificate (PEM)")
    p.add_argument("--key", type=Path, default=None, help="TLS server key (PEM)")
    p.add_argument("--client-ca", type=Path, default=None, help="require client certs (profile 3)")
    p.add_argument("--log", type=Path, default=None, help="append each request as a JSON line")

    p = sub.add_parser("demo", help="the kiosk on the simulator, interactive, embedded gateway")
    p.add_argument("--config", type=Path, default=Path("deploy/terminal.toml"))
    p.add_argument("--data", type=Path, default=Path("var/demo"))
    p.add_argument(
        "--speed",
        type=number_in(0, DEMO_SPEED_MAX),
        default=None,
        help="simulated seconds per real second (default 4)",
    )

    sub.add_parser("gateway", help="the reference gateway: serve, migrate, reconcile (see --help)")

    p = sub.add_parser(
        "diagram", help="print the state diagram (Mermaid) generated from the machine"
    )
    p.add_argument("--markdown", action="store_true", help="as docs/state-machine.md")
    sub.add_parser("price", help="price a session with an OCPI tariff (see --help)")
    sub.add_parser("provision", help="write keys for a simulated fleet (see --help)")
    sub.add_parser("set-technician-pin", help="set the serial console's PIN (see --help)")

    args = parser.parse_args(args_in)
    try:
        return _dispatch(args, sub.choices[args.command])
    except DirectoryInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_IN_USE


def _dispatch(args: argparse.Namespace, parser: ArgumentParser) -> int:
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "relay-off":
        from terminal.relay_off import relay_off  # noqa: PLC0415 - gpiozero on demand

        _setup_logging(False)
        cfg = _load(args.config)
        try:
            return relay_off(cfg)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "run":
        from terminal.service import run_service  # noqa: PLC0415 - heavy imports

        _setup_logging(args.verbose)
        cfg = _load(args.config)
        try:
            return run_service(cfg)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "simulate":
        from launcher.simulate import main as simulate_main  # noqa: PLC0415 - heavy imports

        script = _script(parser, args.script)
        cfg = _load(args.config)
        _data_dir(parser, args.data)
        _files(parser, processors=args.processors)
        if args.processors is not None:
            from launcher.simulate import check_processors  # noqa: PLC0415 - heavy imports

            try:
                check_processors(args.processors)
            except ConfigError as exc:
                where = str(args.processors)
                parser.fail(
                    f"--processors {exc}" if exc.key == where else f"--processors {where}: {exc}"
                )
        wallet = _lightning_wallet(parser, args.lightning_wallet, args.lightning_wallet_key)
        if args.gateway_db is not None:
            from gateway.ledger.database import unusable  # noqa: PLC0415 - the gateway extra

            if (problem := unusable(args.gateway_db)) is not None:
                parser.fail(f"--gateway-db: {problem}")
        logging.basicConfig(level=logging.WARNING)
        if args.csms is not None:
            from launcher.csms import joined  # noqa: PLC0415 - the ocpp extra

            try:
                cfg = joined(cfg, args.csms)
            except ConfigError as exc:
                print(f"config error: {exc}", file=sys.stderr)
                return EXIT_CONFIG
        return simulate_main(
            cfg,
            args.script,
            script,
            as_json=args.json,
            data_dir=args.data,
            gateway_db=args.gateway_db,
            processors_file=args.processors,
            wallet=wallet,
        )
    if args.command == "csms":
        from launcher.csms import main as csms_main  # noqa: PLC0415 - the ocpp extra

        _files(
            parser,
            password_file=args.password_file,
            cert=args.cert,
            key=args.key,
            client_ca=args.client_ca,
        )
        _setup_logging(False)
        with _listening(parser, args.host, args.port):
            return csms_main(
                host=args.host,
                port=args.port,
                password_file=args.password_file,
                station=args.station,
                cert=args.cert,
                key=args.key,
                client_ca=args.client_ca,
                log_path=args.log,
            )
    if args.command == "demo":
        from launcher.demo import DEFAULT_SPEED  # noqa: PLC0415 - heavy imports
        from launcher.demo import main as demo_main  # noqa: PLC0415

        cfg = _load(args.config)
        _data_dir(parser, args.data)
        speed = DEFAULT_SPEED if args.speed is None else args.speed
        return demo_main(cfg, args.data, speed=speed)
    if args.command == "diagram":
        from terminal.diagram import markdown, mermaid  # noqa: PLC0415

        print(markdown() if args.markdown else mermaid(), end="\n" if not args.markdown else "")
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse limits the choices


if __name__ == "__main__":
    raise SystemExit(main())
