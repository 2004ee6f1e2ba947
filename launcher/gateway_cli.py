"""`ev-terminal gateway`: serve the reference gateway, migrate, reconcile, add operators.

    ev-terminal gateway migrate --db URL
    ev-terminal gateway [serve] --db URL [--workers N] (--tls DIR | --trusted-proxy ADDR
        --client-ca PEM [--crl PEM] | --insecure-dev) [--keys DIR …] [--processors FILE]
    ev-terminal gateway reconcile --db URL [--processors FILE]
    ev-terminal gateway add-operator --db URL --username NAME --role admin|read-only
        --password-file FILE [--totp]

`--processors` names the processor configuration file (adapters, routing rules, sites; see
`gateway/processors/routing.py`); the gateway takes a changed file while it runs. Without it
the simulated processor takes every payment.

`--db` is a SQLite file path or a `postgresql://` URL. Every user error is one line on stderr
and exit 2, before anything is created.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from terminal.arguments import ArgumentParser

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: one line, exit 2."""


def _parser() -> ArgumentParser:
    # One-line argument errors, exit 2, as every subcommand (terminal/arguments.py).
    parser = ArgumentParser(prog="ev-terminal gateway", description=__doc__.split("\n")[0])
    parser.add_argument(
        "action",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "reconcile", "add-operator"],
    )
    parser.add_argument(
        "--db", default="var/gateway.sqlite3", help="SQLite file or postgresql:// URL"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--keys",
        type=Path,
        action="append",
        default=[],
        help="a fleet's gateway key dir (from provision): decrypt and check card data",
    )
    parser.add_argument(
        "--tls",
        type=Path,
        metavar="DIR",
        help="serve HTTPS with mutual TLS from the fleet's gateway dir (provision --tls-host)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="a reverse proxy's address (or network) whose forwarded client certificate is read",
    )
    parser.add_argument("--client-ca", type=Path, help="the fleet CA, to verify forwarded certs")
    parser.add_argument("--crl", type=Path, help="the fleet's CRL, for forwarded certificates")
    parser.add_argument(
        "--insecure-dev",
        action="store_true",
        help="plain HTTP, no terminal identity, loopback only: development and demos",
    )
    parser.add_argument("--operator-token-file", type=Path, help="bearer token for /operator/*")
    parser.add_argument(
        "--smtp", metavar="HOST:PORT", help="the mail relay for drivers' sign-in links"
    )
    parser.add_argument("--mail-from", metavar="ADDR", help="the sender of sign-in links")
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="the gateway's public address, as phones reach it: links in e-mails and the "
        "pay-by-phone QR codes kiosks show (default: the address a request came to)",
    )
    parser.add_argument("--username", help="add-operator: the operator's user name")
    parser.add_argument(
        "--role", choices=["admin", "read-only"], help="add-operator: what the operator may do"
    )
    parser.add_argument(
        "--password-file", type=Path, help="add-operator: a file holding the password (- = stdin)"
    )
    parser.add_argument(
        "--totp",
        action="store_true",
        help="add-operator: require a TOTP code at sign-in; prints the otpauth:// URI once",
    )
    parser.add_argument(
        "--processors",
        type=Path,
        metavar="FILE",
        help="processor configuration (TOML: [[processors]], [[routes]], [sites]); read again "
        "when it changes",
    )
    parser.add_argument(
        "--max-amount", default="1000", help="largest hold in major units (default 1000)"
    )
    parser.add_argument(
        "--step-lock",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a money step stays with the worker that began it before another "
        "worker may resolve it (default 30; longer than a processor call)",
    )
    return parser


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{what}: {path} is not a readable file")
    return path


def _settings(args: argparse.Namespace) -> Any:
    from gateway.server import Settings  # noqa: PLC0415 - the gateway extra
    from gateway.tls import ServerTLS  # noqa: PLC0415

    if not 1 <= args.port <= 65535 and args.port != 0:
        raise UsageError(f"--port: {args.port} is not a TCP port (1-65535)")
    if args.workers < 1:
        raise UsageError("--workers: at least 1")
    if args.step_lock <= 0:
        raise UsageError("--step-lock: must be positive")
    try:
        max_amount = Decimal(args.max_amount)
    except InvalidOperation:
        raise UsageError(f"--max-amount: {args.max_amount!r} is not a number") from None
    if max_amount <= 0:
        raise UsageError("--max-amount: must be positive")
    for key_dir in args.keys:
        if not key_dir.is_dir():
            raise UsageError(f"--keys: {key_dir} is not a directory")
    if args.keys:
        from gateway.card_data import CardVault  # noqa: PLC0415
        from terminal.errors import KeyMaterialError  # noqa: PLC0415

        try:
            CardVault.from_key_dirs(*args.keys)
        except (KeyMaterialError, OSError, ValueError) as exc:
            raise UsageError(f"--keys: {exc}") from None
    tls = None
    if args.tls is not None:
        if not args.tls.is_dir():
            raise UsageError(f"--tls: {args.tls} is not a directory")
        tls = ServerTLS(
            certfile=_readable(args.tls / "tls-server.pem", "--tls"),
            keyfile=_readable(args.tls / "tls-server.key", "--tls"),
            client_ca=_readable(args.tls / "tls-ca.pem", "--tls"),
            crl_file=_readable(args.tls / "tls-crl.pem", "--tls"),
        )
    forwarded = None
    if args.trusted_proxy:
        if args.client_ca is None:
            raise UsageError("--trusted-proxy needs --client-ca (the fleet CA) to verify with")
        forwarded = _forwarded(args)
    if tls is None and forwarded is None and not args.insecure_dev:
        raise UsageError(
            "terminals must be identified: give --tls DIR, or --trusted-proxy ADDR with "
            "--client-ca, or --insecure-dev for development on loopback"
        )
    if args.insecure_dev and args.host not in ("127.0.0.1", "::1", "localhost"):
        raise UsageError("--insecure-dev serves only on a loopback address")
    token = None
    if args.operator_token_file is not None:
        token = _readable(args.operator_token_file, "--operator-token-file").read_text().strip()
    return Settings(
        db_url=args.db,
        mailer=_mailer(args),
        public_url=_public_url(args.public_url),
        key_dirs=tuple(args.keys),
        tls=tls,
        insecure_dev=args.insecure_dev,
        forwarded=forwarded,
        operator_token=token or None,
        max_amount_major=max_amount,
        lock_s=args.step_lock,
        processors_file=args.processors,
    )


def _mailer(args: argparse.Namespace) -> Any:
    from gateway.web.mailer import Mailer  # noqa: PLC0415 - the gateway extra

    if args.smtp is None:
        if args.mail_from is not None:
            raise UsageError("--mail-from needs --smtp HOST:PORT")
        return None
    host, _, port = args.smtp.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--smtp: {args.smtp!r} is not HOST:PORT")
    if args.mail_from is None or "@" not in args.mail_from:
        raise UsageError("--mail-from: the sender's e-mail address is needed with --smtp")
    return Mailer(host=host, port=int(port), sender=args.mail_from)


def _public_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--public-url: {value!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        # Links are made by appending a path (`/pay/CODE`): a base URL only.
        raise UsageError(f"--public-url: {value!r} must have no query, fragment or user")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise UsageError(f"--public-url: {value!r} has an invalid port") from None
    return value.rstrip("/")


def _forwarded(args: argparse.Namespace) -> Any:
    from gateway import proxy_identity  # noqa: PLC0415 - the gateway extra

    try:
        networks = proxy_identity.parse_networks(args.trusted_proxy)
    except ValueError as exc:
        raise UsageError(f"--trusted-proxy: {exc}") from None
    return proxy_identity.ForwardedCertificates(
        client_ca=_readable(args.client_ca, "--client-ca"),
        crl_file=_readable(args.crl, "--crl") if args.crl is not None else None,
        trusted_proxies=networks,
        clock=lambda: datetime.now(UTC),
    )


def _announce(line: str) -> None:
    print(line, flush=True)


def _prepare_db(url: str) -> None:
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)


def _existing_db(url: str) -> None:
    """Serving or reconciling never creates a database: a SQLite path must exist."""
    if "://" not in url and not Path(url).is_file():
        raise UsageError(f"no gateway database at {url}: run `ev-terminal gateway migrate` first")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        # The report of `reconcile` is the only thing on stdout; its log goes to stderr.
        stream=sys.stdout if args.action == "serve" else sys.stderr,
        level=logging.INFO,
        format="level=%(levelname)s logger=%(name)s %(message)s",
    )
    try:
        return _run(args)
    except UsageError as exc:
        print(f"ev-terminal gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - the gateway extra

    from gateway.ledger import SchemaMismatch, migrate, open_engine  # noqa: PLC0415

    if args.action == "migrate":
        _prepare_db(args.db)
        engine = open_engine(args.db)
        try:
            before, after = migrate(engine)
        except (SchemaMismatch, SQLAlchemyError) as exc:
            raise UsageError(f"migrate: {exc}") from None
        finally:
            engine.dispose()
        print(f"gateway schema: {before or 'empty'} -> {after}")
        return 0
    if args.action == "reconcile":
        _existing_db(args.db)
        return _reconcile(args)
    if args.action == "add-operator":
        _existing_db(args.db)
        return _add_operator(args)
    settings = _settings(args)
    _existing_db(args.db)
    from gateway.server import serve  # noqa: PLC0415

    _check_processors(settings)
    try:
        return serve(settings, args.host, args.port, workers=args.workers, announce=_announce)
    except SchemaMismatch as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except SQLAlchemyError as exc:
        raise UsageError(f"database {args.db}: {type(exc).__name__}") from None


def _check_processors(settings: Any) -> None:
    """The processor configuration file as the workers will read it: one line naming the key
    on any problem, before anything listens."""
    from gateway.ledger import SchemaMismatch  # noqa: PLC0415 - the gateway extra
    from gateway.server import check_routing  # noqa: PLC0415
    from terminal.errors import ConfigError  # noqa: PLC0415

    try:
        check_routing(settings)
    except ConfigError as exc:
        where = settings.processors_file
        raise UsageError(
            f"--processors {exc}" if exc.key == str(where) else f"--processors {where}: {exc}"
        ) from None
    except SchemaMismatch as exc:
        raise UsageError(str(exc)) from None


def _reconcile(args: argparse.Namespace) -> int:
    """One reconciliation round; the report as JSON; exit 1 when an operator must act."""
    from gateway.ledger import SchemaMismatch, check_schema, open_engine  # noqa: PLC0415
    from gateway.server import Settings, build  # noqa: PLC0415

    engine = open_engine(args.db)
    try:
        check_schema(engine)
    except SchemaMismatch as exc:
        raise UsageError(str(exc)) from None
    finally:
        engine.dispose()
    settings = Settings(db_url=args.db, insecure_dev=True, processors_file=args.processors)
    _check_processors(settings)
    built = build(settings)
    try:
        report = built.reconciler.report()
    finally:
        built.engine.dispose()
    print(
        json.dumps(
            {
                "resolved": report.resolved,
                "open": report.open,
                "unknown": report.unknown,
                "stale": report.stale,
                "mismatched": report.mismatched,
            },
            indent=2,
        )
    )
    return 1 if report.needs_operator else 0


def _add_operator(args: argparse.Namespace) -> int:
    """A console operator with an argon2 password hash; the change is in the audit log."""
    import re  # noqa: PLC0415

    from gateway.ledger import SchemaMismatch, check_schema, now, open_engine  # noqa: PLC0415
    from gateway.ledger.operators import USERNAME_PATTERN, Operators  # noqa: PLC0415
    from gateway.ledger.web_schema import ADMIN, READ_ONLY  # noqa: PLC0415
    from gateway.web.operator_auth import (  # noqa: PLC0415
        MIN_PASSWORD,
        hash_password,
        new_totp_secret,
        totp_uri,
    )

    if args.username is None or not re.fullmatch(USERNAME_PATTERN, args.username):
        raise UsageError("--username: 2-64 characters, lower-case letters, digits, '.', '_' or '-'")
    if args.role is None:
        raise UsageError("--role: admin or read-only")
    if args.password_file is None:
        raise UsageError("--password-file: a file holding the password, or - for stdin")
    if str(args.password_file) == "-":
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = _readable(args.password_file, "--password-file").read_text().rstrip("\n")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"--password-file: the password needs at least {MIN_PASSWORD} characters")
    engine = open_engine(args.db)
    try:
        check_schema(engine)
        secret = new_totp_secret() if args.totp else None
        added = Operators(engine, now).add(
            args.username,
            hash_password(password),
            ADMIN if args.role == "admin" else READ_ONLY,
            actor="cli",
            totp_secret=secret,
        )
    except SchemaMismatch as exc:
        raise UsageError(str(exc)) from None
    finally:
        engine.dispose()
    if not added:
        raise UsageError(f"--username: an operator named {args.username} exists already")
    print(f"operator {args.username} added ({args.role})")
    if secret is not None:
        print(f"TOTP: {totp_uri(secret, args.username)}")
    return 0
