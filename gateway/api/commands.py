"""The command channel's routes (terminal API v1): a terminal's long poll for its commands,
and its answer to each (`gateway.commands`).

`GET /v1/commands?wait=N` answers at once with the commands waiting for the calling
terminal, or after up to N seconds (at most 30) with none; it runs on the event loop, so a
fleet of waiting terminals holds no worker threads. `POST /v1/commands/{id}/answer` carries
an Idempotency-Key like every terminal POST.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway import wire
from gateway.api.requests import TerminalRequests
from gateway.commands import Commands
from gateway.ledger.idempotency import RequestKey, StoredAnswer
from gateway.pay.codes import Offer, PayCodes

CommandId = Annotated[str, Path(pattern=wire.ID_PATTERN)]
MAX_WAIT_S = 30


def command_routes(
    commands: Commands,
    frame: TerminalRequests,
    codes: PayCodes | None = None,
    *,
    public_url: str | None = None,
) -> APIRouter:
    router = APIRouter()
    pay_codes = codes or PayCodes(commands.ledger)

    @router.get(
        "/v1/commands",
        response_model=wire.CommandsAnswer,
        responses={401: {"model": wire.ErrorAnswer}, 403: {"model": wire.ErrorAnswer}},
    )
    async def get_commands(
        request: Request,
        terminal_id: Annotated[str, Query(min_length=1, max_length=64)],
        wait: Annotated[int, Query(ge=0, le=MAX_WAIT_S)] = 0,
        pay_code: Annotated[str | None, Query(pattern=wire.ID_PATTERN)] = None,
    ) -> JSONResponse:
        """The calling terminal's waiting commands; with none, wait up to `wait` seconds for
        one. A command not answered is sent again on a later poll. `terminal_id` must be the
        certificate's terminal. With `pay_code` (the code it shows), the poll also ends when
        that code can no longer be paid (`"pay_code": "spent"`: ask for a new one)."""
        caller = frame.caller_for(request, terminal_id)
        if isinstance(caller, JSONResponse):
            return caller
        deadline = time.monotonic() + wait
        while True:
            found: list[dict[str, Any]] = await run_in_threadpool(commands.waiting, terminal_id)
            code = None
            if pay_code is not None:
                is_open = await run_in_threadpool(pay_codes.current_open, pay_code)
                code = "open" if is_open else "spent"
            left = deadline - time.monotonic()
            if found or code == "spent" or left <= 0 or await request.is_disconnected():
                return JSONResponse(content={"commands": found, "pay_code": code})
            await commands.bell.wait(left)

    @router.post(
        "/v1/commands/{command_id}/answer",
        response_model=wire.CommandAnswerAnswer,
        responses={
            code: {"model": wire.ErrorAnswer} for code in (400, 401, 403, 404, 409, 413, 422, 504)
        },
    )
    def answer(
        command_id: CommandId,
        body: wire.CommandAnswer,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        """Started or not (a start; "not_started" releases the hold), or received (a stop)."""
        caller = frame.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        terminal = caller.terminal  # None only in the development mode
        return frame.run_idempotent(
            caller,
            idempotency_key,
            f"commands.answer:{command_id}",
            body,
            lambda _key: commands.answer(
                command_id,
                terminal,
                session_id=body.session_id,
                status=body.status,
                reason=body.reason,
            ),
        )

    @router.post(
        "/v1/pay-codes",
        response_model=wire.PayCodeAnswer,
        responses={code: {"model": wire.ErrorAnswer} for code in (400, 401, 403, 413, 422)},
    )
    def pay_code(
        body: wire.PayCodeRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        """The one-time code the terminal's QR shows (pay by phone), with its link and how
        long it may be shown: the one it has while that has time left, else a new one."""
        caller = frame.caller_for(request, body.terminal_id)
        if isinstance(caller, JSONResponse):
            return caller
        offer = Offer(
            station=body.station,
            hold_minor=body.hold.minor,
            currency=body.hold.currency,
            price={k: v[:10] for k, v in body.price.items()},
            language=body.language,
        )
        base = str(request.base_url).rstrip("/")

        def work(_key: RequestKey) -> StoredAnswer:
            found = pay_codes.for_terminal(body.terminal_id, offer)
            left = found.expires_at - pay_codes.ledger.clock()
            return StoredAnswer(
                status_code=200,
                body={
                    "code": found.code,
                    "url": f"{(public_url or base).rstrip('/')}/pay/{found.code}",
                    "expires_in_ms": max(1, int(left.total_seconds() * 1000)),
                },
            )

        return frame.run_idempotent(caller, idempotency_key, "pay-codes", body, work)

    return router
