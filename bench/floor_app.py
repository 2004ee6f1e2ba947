"""The floor of `bench_gateway`: the least a durable endpoint can do per request on the same
stack, to compare the gateway's full idempotent path with.

    python -m bench.floor_app --db URL --port P [--workers N]

A bare ASGI app under the same uvicorn, served like the gateway (`gateway.server.listen`;
with `--workers`, forked processes each with its own listening socket on the port
`gateway.server.reserve` holds and its own engine from
`gateway.ledger.database.open_engine`, so the same SQLite pragmas and `BEGIN IMMEDIATE`, the
same PostgreSQL pool). Every POST does one INSERT and one COMMIT into a table of its own
(`bench_floor`, never touched by the gateway) in the worker's thread pool, as the gateway's
synchronous routes run, and answers 201 with a small JSON body. GET /healthz answers 200.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from gateway.ledger.database import open_engine
from gateway.server import listen, reserve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

metadata = sa.MetaData()
floor = sa.Table(
    "bench_floor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idem_key", sa.String(200), nullable=False),
    sa.Column("path", sa.String(200), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

ANSWER = b'{"status":"stored"}'


def make_app(engine: Engine) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    def insert(key: str, path: str, body: bytes) -> None:
        with engine.begin() as conn:  # one transaction: BEGIN (IMMEDIATE on SQLite) .. COMMIT
            conn.execute(floor.insert().values(idem_key=key, path=path, body=body))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, answer = 200, b'{"status":"ok"}'
        if scope["method"] == "POST":
            headers = dict(scope["headers"])
            key = headers.get(b"idempotency-key", b"").decode("latin-1")
            await anyio.to_thread.run_sync(insert, key, scope["path"], body)
            status, answer = 201, ANSWER
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def _run_worker(db_url: str, sock: Any) -> None:
    engine = open_engine(db_url)
    server = uvicorn.Server(
        uvicorn.Config(make_app(engine), log_level="warning", access_log=False, lifespan="off")
    )
    try:
        server.run(sockets=[sock])
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    engine = open_engine(args.db)
    metadata.create_all(engine)
    engine.dispose()
    if args.workers <= 1:
        sock = listen(args.host, args.port)
        print(f"floor listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
        _run_worker(args.db, sock)
        return 0
    held = reserve(args.host, args.port)  # a listening socket per worker, as the gateway's
    port = held.getsockname()[1]
    print(f"floor listening on http://{args.host}:{port}", flush=True)
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _run_worker(args.db, listen(args.host, port, shared_port=True))
            finally:
                os._exit(0)
        children.append(pid)

    def stop(_signum: int, _frame: Any) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in children:
        while True:
            try:
                os.wait()
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
