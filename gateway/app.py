"""The gateway's HTTP app: the terminal API (v1), the public receipt, the operator's console
(`gateway.web`), the operator's API (revenue, refunds; bearer token), and the background jobs
that run while it is served.

`create_app` is given everything it uses (the composition root, `gateway.server`, builds it);
there are no globals, so several apps (workers, tests) can share one database.

Idempotency follows the IETF httpapi Idempotency-Key draft as the best payment APIs do
(`gateway.api.requests`); the money steps are exactly once across workers and crashes
(`gateway.payments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.telemetry import TelemetryConfig
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import wire
from gateway.amounts import AmountLimits
from gateway.api.commands import command_routes
from gateway.api.identity import Caller, Identity
from gateway.api.lane import LaneRoute, MoneyLane
from gateway.api.limits import DEFAULT_BODY_LIMIT, BodyLimit
from gateway.api.link_codes import link_code_routes
from gateway.api.requests import TerminalRequests, error
from gateway.api.terminal import terminal_routes
from gateway.card_data import CardVault
from gateway.commands import Commands
from gateway.jobs.expiry import KeyExpiry
from gateway.jobs.runner import Job
from gateway.ledger import Ledger
from gateway.ledger.credit_notes import credit_refunds
from gateway.ledger.idempotency import IdempotencyKeys
from gateway.ledger.link_codes import LinkCodes
from gateway.pay.checkout import Checkout
from gateway.pay.codes import PayCodes
from gateway.pay.routes import pay_routes
from gateway.payments import Payments
from gateway.processors.port import Processor
from gateway.processors.registry import Processors
from gateway.web.credit_note import compose_credit
from gateway.web.mailer import Mailer
from gateway.web.receipts import receipt_routes
from gateway.web.site import add_web
from gateway.web.templating import Pages
from gateway.webhooks import Webhooks

# The operator's requests keep their idempotency keys apart from every terminal's.
OPERATOR = Caller("operator")
LOCK_S = 30.0
TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}  # a processor call is given up after 10-20 s; a step's lock outlives it


class _Gateway(FastAPI):
    """The app, with the money routes' fast lane (`gateway.api.lane`) outermost: a
    well-formed money POST skips the framework's per-request work; anything else reaches the
    app as sent."""

    lane: tuple[tuple[LaneRoute, ...], int] | None = None

    def build_middleware_stack(self) -> Any:
        stack = super().build_middleware_stack()
        if self.lane is None:
            return stack
        routes, limit = self.lane
        return MoneyLane(stack, routes, limit)


def create_payments(
    ledger: Ledger,
    processors: Processors | Processor,
    vault: CardVault | None = None,
    *,
    limits: AmountLimits | None = None,
    lock_s: float = LOCK_S,
    unverified_cards: bool = False,
) -> Payments:
    registry = processors if isinstance(processors, Processors) else Processors([processors])
    return Payments(
        ledger,
        registry,
        vault=vault,
        limits=limits or AmountLimits(),
        lock_s=lock_s,
        unverified_cards=unverified_cards,
    )


def create_app(
    payments: Payments,
    *,
    identity: Identity | None = None,
    jobs: Sequence[Job] | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
    operator_token: str | None = None,
    commands: Commands | None = None,
    mailer: Mailer | None = None,
    public_url: str | None = None,
    checkout: Checkout | None = None,
) -> FastAPI:
    """The app over `payments`. `identity` decides who calls a terminal route (default: only
    terminals with a certificate). While served (its lifespan), `jobs` run in the background
    (default: idempotency-key expiry). With `operator_token`, `GET /operator/revenue` answers
    a request bearing it. `checkout` takes the payment pages' payments (its
    `WaitingPayments` job belongs in `jobs`)."""
    ledger = payments.ledger
    keys = IdempotencyKeys(ledger, lock_s=payments.lock.total_seconds())
    identity = identity or Identity()
    frame = TerminalRequests(identity, keys)
    background = list(jobs) if jobs is not None else [KeyExpiry(ledger)]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(job.run_forever(), name=job.name) for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = terminal_routes(payments, frame)
    app = _Gateway(
        title="ev-terminal gateway",
        version="1.0.0",
        lifespan=lifespan,
        # The gateway logs with stdlib logging and configures no OpenTelemetry provider;
        # left on, FastAPI looks for one on every request (about 4 % of a money request's CPU).
        telemetry=TELEMETRY_OFF,
    )
    app.add_middleware(BodyLimit, limit=body_limit)
    app.lane = (routes.lane, body_limit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if where == "header.idempotency-key":
            return error(400, "idempotency_key_required", "Idempotency-Key header")
        return error(400, "invalid_request", f"{where}: {first['msg']}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (a body that is not JSON, an unknown path or method) in
        # the same error shape as every other answer.
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        return error(exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail))

    app.include_router(routes.router)
    commands = commands or Commands(payments)
    checkout = checkout or Checkout(PayCodes(ledger), payments, commands)
    codes = checkout.codes
    app.include_router(command_routes(commands, frame, codes, public_url=public_url))
    pages = Pages()  # every page (web/ and the payment pages) renders through this one
    app.include_router(pay_routes(checkout, commands, pages))
    app.include_router(link_code_routes(LinkCodes(ledger.engine, ledger.clock), frame))
    vault = payments.vault
    app.include_router(receipt_routes(ledger, pages, None if vault is None else vault.reading_key))

    def operator_refund(authorization_id: str, body: wire.RefundRequest, key: str) -> JSONResponse:
        answer = frame.run_idempotent(
            OPERATOR,
            key,
            f"operator.refund:{authorization_id}",
            body,
            lambda request: payments.refund(
                authorization_id, body, key, request.store, claim=request.claim
            ),
            claims=True,
        )
        if answer.status_code < 300:
            # The refund is recorded: its credit note, when the session has an invoice (once
            # per refund however often this runs; the receipt page credits what this missed).
            credit_refunds(
                ledger.engine,
                authorization_id=authorization_id,
                at=ledger.clock(),
                compose=compose_credit,
            )
        return answer

    # The operator's console (and later the driver's portal): pages, not terminal routes.
    add_web(
        app,
        payments,
        operator_refund,
        pages,
        trusts=getattr(identity.forwarded, "trusts", None),
        mailer=mailer,
        public_url=public_url,
    )

    def operator(request: Request) -> bool:
        """Whether the request bears the operator's token (operator routes are not served
        without one configured)."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return operator_token is not None and hmac.compare_digest(given, operator_token)

    @app.get("/operator/revenue", include_in_schema=False)
    def revenue(request: Request) -> JSONResponse:
        """Captured revenue per currency. Not a terminal route."""
        if not operator(request):
            return error(404, "not_found", "not found")
        return JSONResponse(content={"revenue": ledger.revenue()})

    @app.post("/operator/authorizations/{authorization_id}/refunds", include_in_schema=False)
    def refund(
        authorization_id: str,
        body: wire.RefundRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        """Refund part or all of a captured payment through the processor that captured it
        (several refunds, never more in all than was captured), with the operator's reason."""
        if not operator(request):
            return error(404, "not_found", "not found")
        return operator_refund(authorization_id, body, idempotency_key)

    webhooks = Webhooks(payments)

    @app.post("/webhooks/{processor}/{account}", include_in_schema=False)
    async def webhook(processor: str, account: str, request: Request) -> PlainTextResponse:
        """A processor's notification (`gateway.webhooks`): the raw body, as it was signed."""
        body = await request.body()
        headers = dict(request.headers)
        answer = await run_in_threadpool(webhooks.receive, processor, account, headers, body)
        return PlainTextResponse(answer.body, status_code=answer.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _contract(app)  # type: ignore[method-assign]
    return app


def _contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document as the gateway really answers: FastAPI lists its own 422
    validation answer on every route, but the gateway answers invalid requests with 400
    `invalid_request` in the `ErrorAnswer` shape (and uses 422 only for a reused key)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    error = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
    }
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            fastapi_422 = responses.get("422", {})
            ref = str(fastapi_422.get("content", {}).get("application/json", {}).get("schema"))
            if "HTTPValidationError" in ref:
                del responses["422"]
            responses.setdefault("400", {"description": "invalid request", **error})
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = document
    return document
