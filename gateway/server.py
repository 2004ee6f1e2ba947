"""Run the gateway: as its own service (`ev-terminal gateway`, one or many worker processes) or
embedded in a thread on 127.0.0.1 for the demo, the scripted simulator and tests.

This is the gateway's composition root: it builds the engine, ledger, processors, card vault,
identity and jobs from settings and hands them to `create_app`.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from gateway.amounts import AmountLimits
from gateway.api.identity import Forwarded, Identity
from gateway.api.limits import DEFAULT_BODY_LIMIT
from gateway.app import LOCK_S, create_app, create_payments
from gateway.card_data import CardVault
from gateway.commands import CommandExpiry, Commands
from gateway.jobs.crl_watch import CrlWatch
from gateway.jobs.expiry import EXPIRE_EVERY_S, KeyExpiry
from gateway.jobs.reconciler import HOLD_GRACE, RECONCILE_EVERY_S, STALE_AFTER, Reconciler
from gateway.jobs.rollup import RevenueRollup
from gateway.jobs.routing_reload import RELOAD_EVERY_S, RoutingReload, check_money_kept
from gateway.jobs.runner import Job
from gateway.ledger import Ledger, check_schema, migrate, now, open_engine
from gateway.ledger.batches import writer_for
from gateway.pay.checkout import Checkout, WaitingPayments
from gateway.pay.codes import PayCodes
from gateway.payments import Payments
from gateway.processors.port import Processor
from gateway.processors.registry import Processors
from gateway.processors.routing import Routing, load_routing
from gateway.processors.simulated import SimulatedProcessor
from gateway.tls import Revocations, ServerTLS, uvicorn_options
from gateway.web.mailer import Mailer

log = logging.getLogger("ev_gateway.server")

START_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def listen(host: str, port: int, *, shared_port: bool = False) -> socket.socket:
    """A listening socket for uvicorn. TCP_NODELAY is set here (accepted sockets inherit it):
    uvicorn does not set it, and without it a response written in two segments waits for the
    client's delayed ACK, about 40 ms a request on Linux. `shared_port`: one of the worker
    sockets on a port held by `reserve` (SO_REUSEPORT)."""
    sock = _bound(host, port, shared_port=shared_port)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """Hold `host`:`port` (0: any free one) for the workers' own listening sockets
    (`listen(..., shared_port=True)`), without listening itself.

    Why a socket per worker: on one shared listening socket every worker is woken by a new
    connection and asyncio's accept loop takes every connection waiting (up to the backlog,
    2048) in one go, so a burst of connections (a fleet reconnecting, a proxy opening its
    keep-alive pool) lands on one worker while the others idle. With SO_REUSEPORT the kernel
    spreads connections over the workers' sockets by their addresses. A worker that dies
    loses the connections still waiting in its own queue (their clients retry, as after any
    refused connection; the money routes are idempotent)."""
    return _bound(host, port, shared_port=True)


def _bound(host: str, port: int, *, shared_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What a gateway process is built from (the `ev-terminal gateway` options)."""

    db_url: str
    key_dirs: tuple[Path, ...] = ()
    tls: ServerTLS | None = None
    insecure_dev: bool = False
    forwarded: Forwarded | None = None
    operator_token: str | None = None
    mailer: Mailer | None = None  # the driver portal's sign-in links (SMTP)
    # The gateway's address as phones reach it: links in e-mails and pay-by-phone QR codes.
    public_url: str | None = None
    max_amount_major: Decimal = Decimal(1000)
    body_limit: int = DEFAULT_BODY_LIMIT
    lock_s: float = LOCK_S
    expire_every_s: float = EXPIRE_EVERY_S
    reconcile_every_s: float = RECONCILE_EVERY_S
    hold_grace: timedelta = HOLD_GRACE
    stale_after: timedelta = STALE_AFTER
    clock: Callable[[], datetime] = field(default=now)
    # The simulated processor's class (tests pass one that records what it was given).
    processor: Callable[[Engine], SimulatedProcessor] = SimulatedProcessor
    # The processor configuration file (`gateway/processors/routing.py`): the adapters and the
    # routing rules, read again when it changes. Without one, the simulated processor alone.
    processors_file: Path | None = None
    reload_every_s: float = RELOAD_EVERY_S


@dataclass
class Built:
    """One worker's object graph."""

    engine: Engine
    ledger: Ledger
    processor: SimulatedProcessor  # the simulated adapter of account "default"
    processors: Processors
    payments: Payments
    expiry: KeyExpiry
    reconciler: Reconciler
    app: FastAPI
    commands: Commands


def build(settings: Settings) -> Built:
    """Build a worker's objects over an engine of its own (never shared across a fork)."""
    engine = open_engine(settings.db_url)
    ledger = Ledger(engine, settings.clock)
    processor = settings.processor(engine)
    reload: Job | None = None
    if settings.processors_file is not None:
        load = _routing_loader(engine, processor)
        routing = load(settings.processors_file)
        processors = Processors(routing.adapters, routing.routes, routing.sites)
        reload = RoutingReload(
            ledger, settings.processors_file, processors, load, settings.reload_every_s
        )
    else:
        processors = Processors([processor])
    vault = CardVault.from_key_dirs(*settings.key_dirs) if settings.key_dirs else None
    payments = create_payments(
        ledger,
        processors,
        vault,
        limits=AmountLimits(max_major=settings.max_amount_major),
        lock_s=settings.lock_s,
        unverified_cards=settings.insecure_dev and vault is None,
    )
    expiry = KeyExpiry(ledger, settings.expire_every_s)
    reconciler = Reconciler(
        payments,
        settings.reconcile_every_s,
        hold_grace=settings.hold_grace,
        stale_after=settings.stale_after,
    )
    commands = Commands(payments)
    checkout = Checkout(PayCodes(ledger), payments, commands)
    jobs: list[Job] = [expiry, reconciler, CommandExpiry(commands), WaitingPayments(checkout)]
    jobs.append(RevenueRollup(ledger))
    if reload is not None:
        jobs.append(reload)
    revocations = _revocations(settings)
    if revocations is not None:
        jobs.append(CrlWatch(ledger, revocations))
    app = create_app(
        payments,
        identity=Identity(insecure_dev=settings.insecure_dev, forwarded=settings.forwarded),
        jobs=jobs,
        body_limit=settings.body_limit,
        operator_token=settings.operator_token,
        commands=commands,
        mailer=settings.mailer,
        public_url=settings.public_url,
        checkout=checkout,
    )
    return Built(engine, ledger, processor, processors, payments, expiry, reconciler, app, commands)


def _routing_loader(engine: Engine, default: SimulatedProcessor) -> Callable[[Path], Routing]:
    """Reads the processor configuration file; a simulated table gets an adapter over this
    worker's engine (the one of account "default" is `default`)."""

    def simulated(account: str) -> Processor:
        return default if account == default.account else SimulatedProcessor(engine, account)

    return lambda path: load_routing(path, simulated=simulated)


def check_routing(settings: Settings) -> Routing | None:
    """Read the processor configuration file as a worker will (a `ConfigError` names the
    key), and refuse one that drops an account still holding money (`check_money_kept`, which
    each reload runs too). Nothing is written."""
    if settings.processors_file is None:
        return None
    engine = open_engine(settings.db_url)
    try:
        check_schema(engine)
        routing = _routing_loader(engine, settings.processor(engine))(settings.processors_file)
        check_money_kept(Ledger(engine), routing)
    finally:
        engine.dispose()
    return routing


def _revocations(settings: Settings) -> Revocations | None:
    """The CRL the gateway checks terminals against, for the CRL watch job."""
    found = getattr(settings.forwarded, "revocations", None)
    if isinstance(found, Revocations):
        return found
    if settings.tls is not None and settings.tls.crl_file is not None:
        return Revocations(settings.tls.crl_file, settings.tls.client_ca, settings.clock)
    return None


class EmbeddedGateway:
    """The reference gateway with the simulated processor, on a loopback port in a thread.

    `down()` stops listening (connections are refused, like a lost link) and `up()` listens
    again on the same port with the same ledger. `restart()` drops the whole gateway
    abruptly — open connections cut, nothing flushed but what was committed — and builds a
    new one on the same database, as a crashed and restarted service would be. With
    `key_dir` (a fleet's gateway key directory) it decrypts and checks the card data of
    payment cards (`CardVault`); without one it takes cards unverified (development mode).
    With `tls` it serves HTTPS with mutual TLS; without, plain HTTP in the development mode
    (bound to loopback). `db_url` puts the ledger on another database (PostgreSQL)."""

    def __init__(
        self,
        db_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        key_dir: Path | None = None,
        *,
        db_url: str | None = None,
        clock: Callable[[], datetime] = now,
        expire_every_s: float = EXPIRE_EVERY_S,
        reconcile_every_s: float = RECONCILE_EVERY_S,
        lock_s: float = LOCK_S,
        tls: ServerTLS | None = None,
        processor: Callable[[Engine], SimulatedProcessor] = SimulatedProcessor,
        processors_file: Path | None = None,
        reload_every_s: float = RELOAD_EVERY_S,
        mailer: Mailer | None = None,
        public_url: str | None = None,
    ) -> None:
        if db_url is None:
            if db_path is None:
                raise ValueError("a database path or URL is needed")
            db_url = f"sqlite:///{db_path}"
        self.tls = tls
        self.operator_token = secrets.token_urlsafe(16)
        self.settings = Settings(
            db_url=db_url,
            key_dirs=(key_dir,) if key_dir is not None else (),
            tls=tls,
            insecure_dev=tls is None,
            operator_token=self.operator_token,
            expire_every_s=expire_every_s,
            reconcile_every_s=reconcile_every_s,
            lock_s=lock_s,
            clock=clock,
            processor=processor,
            processors_file=processors_file,
            reload_every_s=reload_every_s,
            mailer=mailer,
            public_url=public_url,
        )
        engine = open_engine(db_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._retired: list[Engine] = []
        self._build()

    def _build(self) -> None:
        built = build(self.settings)
        self.built = built
        self.engine = built.engine
        self.ledger = built.ledger
        self.processor = built.processor
        self.processors = built.processors
        self.payments = built.payments
        self.expiry = built.expiry
        self.reconciler = built.reconciler
        self.app = built.app
        self.commands = built.commands

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def up(self) -> None:
        if self._server is not None:
            return
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=5,
            **(uvicorn_options(self.tls) if self.tls else {}),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("embedded gateway did not start")
            time.sleep(0.005)
        self._server, self._thread = server, thread

    def down(self, *, abrupt: bool = False) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        server.force_exit = abrupt
        thread.join(timeout=START_TIMEOUT_S)

    def restart(self) -> None:
        """Stop abruptly and start a new gateway (new app, processor, jobs) on the same
        database and port."""
        self.down(abrupt=True)
        _dispose_when_returned(self.engine)
        self._retired.append(self.engine)
        self._build()
        self.up()

    def close(self) -> None:
        self.down()
        # Again for the engines a restart retired: a request's thread that outlived the stop
        # may have gone on to its next transaction on the pool `dispose` made afresh.
        for engine in [*self._retired, self.engine]:
            _dispose_when_returned(engine)
        self._retired.clear()


def _dispose_when_returned(engine: Engine) -> None:
    """Close the engine's connections once they are all back in its pool.

    A sync route runs in a worker thread that outlives an abrupt stop (the event loop is gone,
    the thread finishes its request), and it may still hold a connection. `Engine.dispose()`
    closes only the connections checked in; one checked in later goes back to the old pool,
    which nobody closes: it stays open on the database server until the garbage collector
    drops it. So wait (bounded) for the checked-out ones first. The group commit's writer
    keeps its connection checked out between batches (PostgreSQL): it is given back first,
    or the wait would always run to its bound."""
    writer_for(engine).close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        pool = engine.pool
        if not isinstance(pool, QueuePool) or not pool.checkedout():
            break
        time.sleep(0.005)
    engine.dispose()


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    workers: int = 1,
    announce: Callable[[str], None] = log.info,
) -> int:
    """Run the gateway in the foreground until SIGTERM or SIGINT: one process, or a supervisor
    with `workers` forked processes, each with its own listening socket on one port
    (`reserve`) and its own engine; any request may land on any of them. Refuses a database
    whose schema it does not know."""
    if settings.insecure_dev and host not in LOOPBACK:
        raise ValueError("--insecure-dev serves only on a loopback address")
    engine = open_engine(settings.db_url)
    try:
        check_schema(engine)
    finally:
        engine.dispose()
    if settings.insecure_dev:
        log.warning(
            "event=insecure_development_mode detail=%s",
            "plain HTTP, terminals NOT authenticated, cards NOT verified without --keys",
        )
    scheme = "https" if settings.tls else "http"
    if workers <= 1:
        sock = listen(host, port)
        announce(f"gateway listening on {scheme}://{host}:{sock.getsockname()[1]}")
        _run_worker(settings, sock)
        return 0
    held = reserve(host, port)  # each worker listens on a socket of its own (`reserve`)
    port = held.getsockname()[1]
    announce(f"gateway listening on {scheme}://{host}:{port}")
    return _supervise(settings, lambda: listen(host, port, shared_port=True), workers)


def _run_worker(settings: Settings, sock: socket.socket) -> None:
    built = build(settings)
    # What start-up built (the app, its routes and models, the engine: about 160,000
    # objects) lives as long as the worker: out of the collector's generations, so that a
    # full collection does not walk it. Walking it stops every request in flight (measured
    # 0.57-0.72 s a full collection on the 2-core bench machine at load average 21).
    gc.freeze()
    options: dict[str, Any] = uvicorn_options(settings.tls) if settings.tls else {}
    server = uvicorn.Server(
        uvicorn.Config(built.app, log_level="warning", access_log=False, **options)
    )
    try:
        server.run(sockets=[sock])
    finally:
        built.engine.dispose()


def _supervise(settings: Settings, sock: Callable[[], socket.socket], workers: int) -> int:
    """Fork `workers` children, each serving the listening socket `sock()` opens for it, and
    keep them running; forward SIGTERM/SIGINT to them."""
    children: set[int] = set()
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                _run_worker(settings, sock())
            finally:
                os._exit(0)
        children.add(pid)

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                children.discard(pid)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            log.warning("event=worker_died pid=%d status=%d", pid, status)
            spawn()
    sys.stdout.flush()
    return 0
