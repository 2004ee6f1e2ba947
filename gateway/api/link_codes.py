"""`POST /v1/link-codes` (terminal API v1): a one-time code the kiosk shows after a tap, with
which the driver links that card or RFID token to an account on the portal
(`gateway.ledger.link_codes`).

The code is a secret for its few minutes, so the gateway keeps no copy it could replay: the
answer stored under the request's Idempotency-Key is a 409 `link_code_shown_once`, and the
same request sent again gets that (the kiosk asks again under a new key, which replaces the
code). A key reused with another body is refused (422) like on every POST.
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from gateway import wire
from gateway.api.requests import TerminalRequests
from gateway.ledger.idempotency import RequestKey, StoredAnswer
from gateway.ledger.link_codes import LinkCodes
from gateway.payments.answers import Refusal, error_body

SHOWN_ONCE = StoredAnswer(
    status_code=409,
    body=error_body("link_code_shown_once", "a link code is given once; ask again with a new key"),
)


def link_code_routes(codes: LinkCodes, frame: TerminalRequests) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/link-codes",
        response_model=wire.LinkCodeAnswer,
        responses={
            code: {"model": wire.ErrorAnswer} for code in (400, 401, 403, 404, 409, 413, 422)
        },
    )
    def link_code(
        body: wire.LinkCodeRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        """A new code for the card or token of one of the calling terminal's authorizations
        (it replaces that token's earlier code); 404 for an authorization the terminal does
        not have or whose card cannot be linked (a web payment). Never replayed (409)."""
        caller = frame.caller_for(request, body.terminal_id)
        if isinstance(caller, JSONResponse):
            return caller

        def work(key: RequestKey) -> StoredAnswer:
            def store(conn: Connection) -> None:
                key.store(conn, SHOWN_ONCE)

            issued = codes.issue(caller.terminal, body.authorization_id, also=store)
            if issued is None:
                raise Refusal(404, "unknown_authorization", "no such authorization of yours")
            left = issued.expires_at - codes.clock()
            return StoredAnswer(
                status_code=200,
                body={
                    "code": issued.code,
                    "expires_in_ms": max(1, int(left.total_seconds() * 1000)),
                },
            )

        return frame.run_idempotent(caller, idempotency_key, "link-codes", body, work)

    return router
