"""The terminal API (v1): authorizations and their money steps, events, signed meter readings,
the terminal's configuration, and reading back its own authorizations.

Every route needs the terminal's identity (`gateway.api.identity`); a terminal reads and
changes only its own authorizations. Every POST carries an `Idempotency-Key`
(`gateway.api.requests`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, Response

from gateway import wire
from gateway.api.identity import Caller
from gateway.api.lane import LaneRoute
from gateway.api.requests import TerminalRequests, error
from gateway.ledger import tariffs
from gateway.ledger.idempotency import RequestKey, StoredAnswer
from gateway.ledger.store import AuthorizationRow, aware
from gateway.payments import Payments
from gateway.payments.answers import Refusal
from terminal import ocmf

AuthorizationId = Annotated[str, Path(pattern=wire.ID_PATTERN)]
TerminalId = Annotated[str, Path(min_length=1, max_length=64)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a POST gives, all in the `ErrorAnswer` shape: 400 invalid request or
    missing Idempotency-Key, 401 no terminal identity, 403 another terminal's request, 404
    unknown, 409 refused by the rules or another step in progress (`in_progress`: retry), 413
    body too large, 422 key reused with another body, 504 the processor did not answer."""
    return {code: {"model": wire.ErrorAnswer} for code in codes}


def _theirs(caller: Caller, row: AuthorizationRow) -> bool:
    """Whether the authorization `row` is another terminal's than the caller's certificate
    names (never in the development mode, where the caller has no terminal)."""
    return caller.terminal is not None and row.terminal_id != caller.terminal


@dataclass(frozen=True, slots=True)
class TerminalRoutes:
    """The terminal API's router, and its money POSTs for the fast lane (`gateway.api.lane`)."""

    router: APIRouter
    lane: tuple[LaneRoute, ...]


def _money_path(suffix: str = "") -> re.Pattern[str]:
    """A money POST's path for the lane; the id is held to the route's own pattern."""
    if not suffix:
        return re.compile("/v1/authorizations")
    held = wire.ID_PATTERN.removeprefix("^").removesuffix("$")
    return re.compile(f"/v1/authorizations/(?P<authorization_id>{held})/{suffix}")


def terminal_routes(payments: Payments, frame: TerminalRequests) -> TerminalRoutes:
    router = APIRouter()
    ledger = payments.ledger

    def its_own(caller: Caller, authorization_id: str) -> JSONResponse | None:
        """Only the terminal that asked for a hold may raise, capture or void it (another's
        is 403; an unknown one is the step's to answer)."""
        if caller.terminal is None:
            return None
        row = ledger.fetch(authorization_id)
        if row is None or not _theirs(caller, row):
            return None
        return error(403, "terminal_mismatch", "not the certificate's terminal")

    def step_on_hold(
        request: Request,
        authorization_id: str,
        idempotency_key: str,
        *,
        step: str,
        body: wire.Strict,
        work: Callable[[Caller, RequestKey], StoredAnswer],
    ) -> JSONResponse:
        """The frame of a step on an existing hold: who calls, whether the hold is theirs,
        then the idempotent run of `work(caller, key)`, which claims the key itself."""
        caller = frame.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        if (refused := its_own(caller, authorization_id)) is not None:
            return refused
        return frame.run_idempotent(
            caller,
            idempotency_key,
            f"authorizations.{step}:{authorization_id}",
            body,
            lambda key: work(caller, key),
            claims=True,
        )

    @router.post(
        "/v1/authorizations",
        response_model=wire.AuthorizationAnswer,
        responses=_errors(400, 401, 403, 409, 413, 422, 504),
    )
    def create_authorization(
        body: wire.AuthorizationRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        caller = frame.caller_for(request, body.terminal_id)
        if isinstance(caller, JSONResponse):
            return caller
        return frame.run_idempotent(
            caller,
            idempotency_key,
            "authorizations.create",
            body,
            lambda key: payments.authorize(body, key.store, claim=key.claim),
            claims=True,
        )

    @router.post(
        "/v1/authorizations/{authorization_id}/increment",
        response_model=wire.IncrementAnswer,
        responses=_errors(400, 401, 403, 404, 409, 413, 422, 504),
    )
    def increment(
        authorization_id: AuthorizationId,
        body: wire.IncrementRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        """Incremental authorization: raise an approved hold by `amount`, never past the
        `ceiling` the terminal sent. A decline leaves the hold as it was."""
        return step_on_hold(
            request,
            authorization_id,
            idempotency_key,
            step="increment",
            body=body,
            work=lambda _caller, key: payments.increment(
                authorization_id, body, idempotency_key, key.store, claim=key.claim
            ),
        )

    @router.post(
        "/v1/authorizations/{authorization_id}/capture",
        response_model=wire.CaptureAnswer,
        responses=_errors(400, 401, 403, 404, 409, 413, 422, 504),
    )
    def capture(
        authorization_id: AuthorizationId,
        body: wire.CaptureRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        return step_on_hold(
            request,
            authorization_id,
            idempotency_key,
            step="capture",
            body=body,
            work=lambda _caller, key: payments.capture(
                authorization_id, body, key.store, claim=key.claim
            ),
        )

    @router.post(
        "/v1/authorizations/{authorization_id}/void",
        response_model=wire.VoidAnswer,
        responses=_errors(400, 401, 403, 409, 413, 422, 504),
    )
    def void(
        authorization_id: AuthorizationId,
        body: wire.VoidRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        return step_on_hold(
            request,
            authorization_id,
            idempotency_key,
            step="void",
            body=body,
            work=lambda caller, key: payments.void(
                authorization_id, caller.terminal or "", body.reason, key.store, claim=key.claim
            ),
        )

    @router.post(
        "/v1/events", response_model=wire.EventsAnswer, responses=_errors(400, 401, 403, 413, 422)
    )
    def post_events(
        body: wire.EventsRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        caller = frame.caller_for(request, body.terminal_id)
        if isinstance(caller, JSONResponse):
            return caller

        def work(key: RequestKey) -> StoredAnswer:
            with ledger.write() as conn:
                key.claim(conn)
                ledger.add_events(
                    conn, body.terminal_id, [(e.key, e.kind, e.detail) for e in body.events]
                )
                if body.status is not None:
                    ledger.put_status(conn, body.terminal_id, body.status.model_dump_json())
                answer = StoredAnswer(status_code=200, body={"accepted": len(body.events)})
                key.store(conn, answer)
            return answer

        return frame.run_idempotent(caller, idempotency_key, "events", body, work, claims=True)

    @router.post(
        "/v1/meter-readings",
        response_model=wire.MeterReadingsAnswer,
        responses=_errors(400, 401, 403, 413, 422),
    )
    def post_meter_readings(
        body: wire.MeterReadingsRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        """Signed meter readings (OCMF), batched; stored with their authorization. A reading
        must be OCMF and name the sending terminal as its gateway serial (GS)."""
        caller = frame.caller_for(request, body.terminal_id)
        if isinstance(caller, JSONResponse):
            return caller

        def work(key: RequestKey) -> StoredAnswer:
            for reading in body.readings:
                try:
                    parsed = ocmf.parse(reading.ocmf)
                except ocmf.OcmfError as exc:
                    raise Refusal(400, "reading_invalid", str(exc)) from None
                if parsed.payload.get("GS") != body.terminal_id:
                    raise Refusal(400, "reading_invalid", "GS is not the sending terminal")
            with ledger.write() as conn:
                key.claim(conn)
                ledger.add_readings(
                    conn, body.terminal_id, [(r.session_id, r.kind, r.ocmf) for r in body.readings]
                )
                answer = StoredAnswer(status_code=200, body={"accepted": len(body.readings)})
                key.store(conn, answer)
            return answer

        return frame.run_idempotent(
            caller, idempotency_key, "meter-readings", body, work, claims=True
        )

    @router.get(
        "/v1/terminal-config",
        response_model=wire.TerminalConfigAnswer,
        responses={
            304: {"description": "unchanged since the ETag in If-None-Match"},
            401: {"model": wire.ErrorAnswer},
        },
    )
    def terminal_config(request: Request) -> Response:
        """The local authorization and deny lists and the station's tariff, with an ETag: a
        terminal polls with If-None-Match and gets 304 while nothing changed. (In the
        development mode, without a certificate, `?terminal_id=` names the terminal.)"""
        caller = frame.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        allow, deny = ledger.token_lists()
        terminal = caller.terminal or request.query_params.get("terminal_id", "")
        tariff = tariffs.for_terminal(ledger.engine, terminal) if terminal else None
        body: dict[str, Any] = {"authorization_list": allow, "deny_list": deny}
        if tariff is not None:
            body["tariff"] = tariff
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(content=body, headers={"ETag": etag})

    @router.get(
        "/v1/terminals/{terminal_id}/open-authorizations",
        response_model=wire.OpenAuthorizationsAnswer,
        responses={401: {"model": wire.ErrorAnswer}, 403: {"model": wire.ErrorAnswer}},
    )
    def open_authorizations(terminal_id: TerminalId, request: Request) -> JSONResponse:
        """The terminal's holds still open and the newest authorization it sent (its kiosk
        checks its journal against them at start-up). Only its own: another's is 403."""
        caller = frame.caller_for(request, terminal_id)
        if isinstance(caller, JSONResponse):
            return caller
        rows, newest = ledger.terminal_open_holds(terminal_id)
        answer = wire.OpenAuthorizationsAnswer(
            terminal_id=terminal_id,
            authorizations=[
                wire.OpenAuthorization(
                    authorization_id=row.id,
                    status=row.status,
                    amount=wire.Amount(
                        minor=int(row.amount_authorized or row.amount_requested),
                        currency=row.currency,
                    ),
                    created_at=aware(row.created_at).isoformat(),
                )
                for row in rows
            ],
            newest_authorization_id=newest,
        )
        return JSONResponse(content=answer.model_dump(mode="json"))

    @router.get(
        "/v1/authorizations/{authorization_id}",
        responses={401: {"model": wire.ErrorAnswer}, 404: {"model": wire.ErrorAnswer}},
    )
    def get_authorization(authorization_id: AuthorizationId, request: Request) -> JSONResponse:
        """One of the calling terminal's own authorizations (another's is 404)."""
        caller = frame.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        row = ledger.fetch(authorization_id)
        if row is None or _theirs(caller, row):
            return error(404, "unknown_authorization", "no such authorization")
        hidden = {"receipt", "card_token", "op_key", "op_detail"}
        data = {k: v for k, v in row._mapping.items() if k not in hidden}
        return JSONResponse(content=json.loads(json.dumps(data, default=str)))

    lane = (
        LaneRoute(
            _money_path(),
            wire.AuthorizationRequest,
            lambda request, body, key, _path: create_authorization(body, request, key),
        ),
        LaneRoute(
            _money_path("capture"),
            wire.CaptureRequest,
            lambda request, body, key, path: capture(path["authorization_id"], body, request, key),
        ),
        LaneRoute(
            _money_path("void"),
            wire.VoidRequest,
            lambda request, body, key, path: void(path["authorization_id"], body, request, key),
        ),
        LaneRoute(
            _money_path("increment"),
            wire.IncrementRequest,
            lambda request, body, key, path: increment(
                path["authorization_id"], body, request, key
            ),
        ),
    )
    return TerminalRoutes(router=router, lane=lane)
