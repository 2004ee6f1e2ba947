"""The reference gateway's HTTP API (v1): authorizations, captures, voids, events, receipts.

Idempotency follows the IETF httpapi Idempotency-Key draft as the best payment APIs do: every
POST carries an `Idempotency-Key`; the first definite answer (2xx or 4xx) is stored and replayed
for the same key; the same key with a different body is refused with 422; 5xx answers are not
stored, so a retry does the work again (the processor call is keyed too, so it is not doubled).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway import wire
from gateway.card_data import CardVault
from gateway.expiry import KeyExpiry
from gateway.ledger import Ledger, StoredAnswer
from gateway.processors import CardRef, Decision, HoldResult, Processor, ProcessorTimeout
from gateway.tls import client_identity
from terminal import ocmf
from terminal.errors import ProtectedDataError
from terminal.money import Money  # the gateway may use the terminal's pure value types


class Refusal(Exception):
    """A definite refusal, answered with a 4xx and stored for the key."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> StoredAnswer:
    return StoredAnswer(status_code=status, body={"error": {"code": code, "message": message}})


def _amount(minor: int, currency: str) -> dict[str, Any]:
    return {"minor": minor, "currency": currency}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a POST gives, all in the `ErrorAnswer` shape: 400 invalid request or
    missing Idempotency-Key, 403 another terminal's request (mutual TLS), 404 unknown, 409
    refused by the rules, 422 key reused with another body, 504 the processor did not answer."""
    return {code: {"model": wire.ErrorAnswer} for code in codes}


def create_app(
    ledger: Ledger,
    processor: Processor,
    vault: CardVault | None = None,
    *,
    expiry: KeyExpiry | None = None,
) -> FastAPI:
    """Build the API over a ledger and a processor (the composition root passes them in).

    While the app is served (its lifespan), `expiry` forgets old idempotency keys in a
    background task (default: hourly, `gateway.expiry`).

    With a `vault`, a payment card's encrypted card data is verified and decrypted for the
    processor, and a missing, invalid or replayed blob is refused (400 card_data_invalid).
    Without one the gateway holds no fleet keys and passes the card on as sent; that serves
    tests of the money rules with the simulated processor, never a real one."""
    janitor = expiry or KeyExpiry(ledger)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(janitor.run_forever(), name="idempotency-expiry")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="ev-terminal gateway", version="1.0.0", lifespan=lifespan)
    # One lock serialises money operations: the reference gateway favours obviously-correct
    # ordering over throughput (a kiosk fleet sends a few requests a minute per kiosk).
    lock = threading.Lock()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if where == "header.idempotency-key":
            return JSONResponse(
                status_code=400,
                content=_error(400, "idempotency_key_required", "Idempotency-Key header").body,
            )
        return JSONResponse(
            status_code=400,
            content={"error": {"code": "invalid_request", "message": f"{where}: {first['msg']}"}},
        )

    def idempotent(
        key: str, endpoint: str, body: wire.Strict, work: Callable[[Any], StoredAnswer]
    ) -> JSONResponse:
        if not key or len(key) > 128:
            return JSONResponse(
                status_code=400,
                content=_error(400, "idempotency_key_required", "Idempotency-Key header").body,
            )
        digest = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        with lock, ledger.engine.begin() as conn:
            stored = ledger.stored_answer(conn, key)
            if stored is not None:
                stored_endpoint, stored_digest, answer = stored
                if stored_endpoint != endpoint or stored_digest != digest:
                    answer = _error(
                        422, "idempotency_key_reused", "key was used with a different request"
                    )
                return JSONResponse(status_code=answer.status_code, content=answer.body)
            try:
                answer = work(conn)
            except Refusal as refusal:
                answer = _error(refusal.status, refusal.code, refusal.message)
            except ProcessorTimeout:
                # Unknown outcome: not stored, so a retry with the same key tries again.
                return JSONResponse(
                    status_code=504,
                    content=_error(504, "processor_timeout", "processor did not answer").body,
                )
            ledger.store_answer(conn, key, endpoint, digest, answer)
            return JSONResponse(status_code=answer.status_code, content=answer.body)

    def not_this_terminal(request: Request, terminal_id: str) -> JSONResponse | None:
        """Over mutual TLS the terminal is who its certificate says: a body naming another
        terminal is refused (403), before the idempotency key is looked at or stored, so the
        key stays usable by its rightful sender. Over plain HTTP (development) the body's
        terminal id is taken as sent."""
        who = client_identity(request.scope)
        if who is None or who == terminal_id:
            return None
        return JSONResponse(
            status_code=403,
            content=_error(403, "terminal_mismatch", "not the certificate's terminal").body,
        )

    def not_its_terminal(request: Request, authorization_id: str) -> JSONResponse | None:
        """Only the terminal that asked for a hold may capture or void it (mutual TLS)."""
        who = client_identity(request.scope)
        if who is None:
            return None
        with ledger.engine.connect() as conn:
            row = ledger.get(conn, authorization_id)
        if row is None or row.terminal_id in ("", who):
            return None
        return not_this_terminal(request, row.terminal_id)

    @app.post(
        "/v1/authorizations",
        response_model=wire.AuthorizationAnswer,
        responses=_errors(400, 403, 409, 422, 504),
    )
    def create_authorization(
        body: wire.AuthorizationRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        if (refused := not_this_terminal(request, body.terminal_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            existing = ledger.get(conn, body.authorization_id)
            if existing is not None:
                if existing.status == "voided" and existing.processor_ref is None:
                    raise Refusal(409, "already_voided", "authorization was voided before it ran")
                raise Refusal(409, "duplicate_authorization", "authorization id already used")
            card = CardRef(
                kind=body.card.kind,
                token=body.card.token,
                brand=body.card.brand,
                last4=body.card.last4,
                expiry=body.card.expiry,
                payload=dict(body.card.payload),
            )
            if vault is not None:
                try:
                    clear = vault.open(
                        card,
                        claim_ksn=lambda ksn: ledger.claim_ksn(conn, ksn, body.authorization_id),
                    )
                except ProtectedDataError as exc:
                    raise Refusal(400, "card_data_invalid", str(exc)) from None
                card = replace(card, clear=clear)
            if ledger.is_denied(conn, body.card.token):
                # The deny list the terminals also get (GET /v1/terminal-config) holds online.
                result = HoldResult(
                    decision=Decision.DECLINED, amount_minor=0, reference="", reason="denied"
                )
            else:
                result = processor.hold(
                    key=f"hold:{body.authorization_id}",
                    card=card,
                    amount_minor=body.amount.minor,
                    currency=body.amount.currency,
                )
            approved = result.decision is Decision.APPROVED and result.amount_minor > 0
            ledger.insert(
                conn,
                id=body.authorization_id,
                terminal_id=body.terminal_id,
                status="approved" if approved else "declined",
                currency=body.amount.currency,
                amount_requested=body.amount.minor,
                amount_authorized=result.amount_minor if approved else None,
                card_kind=body.card.kind,
                card_token=body.card.token,
                card_brand=body.card.brand,
                card_last4=body.card.last4,
                processor_ref=result.reference or None,
                decline_reason=None if approved else (result.reason or "declined"),
            )
            if approved:
                ledger.move(
                    conn, body.authorization_id, "hold", result.amount_minor, body.amount.currency
                )
                return StoredAnswer(
                    status_code=200,
                    body={
                        "authorization_id": body.authorization_id,
                        "status": "approved",
                        "amount_authorized": _amount(result.amount_minor, body.amount.currency),
                    },
                )
            return StoredAnswer(
                status_code=200,
                body={
                    "authorization_id": body.authorization_id,
                    "status": "declined",
                    "decline_reason": result.reason or "declined",
                },
            )

        return idempotent(idempotency_key, "authorizations.create", body, work)

    @app.post(
        "/v1/authorizations/{authorization_id}/increment",
        response_model=wire.IncrementAnswer,
        responses=_errors(400, 403, 404, 409, 422, 504),
    )
    def increment(
        authorization_id: str,
        body: wire.IncrementRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        """Incremental authorization: raise an approved hold by `amount`, never past the
        `ceiling` the terminal sent. A decline leaves the hold as it was. Only the terminal
        that asked for the hold may raise it (mutual TLS)."""
        if (refused := not_its_terminal(request, authorization_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            row = ledger.get(conn, authorization_id)
            if row is None:
                raise Refusal(404, "unknown_authorization", "no such authorization")
            if row.status != "approved":
                raise Refusal(409, "not_incrementable", f"authorization is {row.status}")
            if {body.amount.currency, body.ceiling.currency} != {row.currency}:
                raise Refusal(409, "currency_mismatch", "increment currency differs")
            if body.amount.minor <= 0:
                raise Refusal(409, "zero_increment", "an increment must be positive")
            asked = row.amount_authorized + body.amount.minor
            if asked > body.ceiling.minor:
                raise Refusal(409, "exceeds_ceiling", "the hold would pass the ceiling")
            if not processor.supports_increment:
                raise Refusal(409, "increment_unsupported", "the processor cannot increment")
            result = processor.increment(
                key=f"increment:{authorization_id}:{idempotency_key}",
                reference=row.processor_ref,
                amount_minor=asked,
            )
            # Never more than asked, never less than already held.
            total = min(max(result.amount_minor, row.amount_authorized), asked)
            if result.decision is not Decision.APPROVED or total <= row.amount_authorized:
                return StoredAnswer(
                    status_code=200,
                    body={
                        "authorization_id": authorization_id,
                        "status": "declined",
                        "decline_reason": result.reason or "declined",
                    },
                )
            ledger.update(conn, authorization_id, amount_authorized=total)
            ledger.move(
                conn, authorization_id, "increment", total - row.amount_authorized, row.currency
            )
            return StoredAnswer(
                status_code=200,
                body={
                    "authorization_id": authorization_id,
                    "status": "approved",
                    "amount_authorized": _amount(total, row.currency),
                },
            )

        return idempotent(
            idempotency_key, f"authorizations.increment:{authorization_id}", body, work
        )

    @app.post(
        "/v1/authorizations/{authorization_id}/capture",
        response_model=wire.CaptureAnswer,
        responses=_errors(400, 403, 404, 409, 422),
    )
    def capture(
        authorization_id: str,
        body: wire.CaptureRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        if (refused := not_its_terminal(request, authorization_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            row = ledger.get(conn, authorization_id)
            if row is None:
                raise Refusal(404, "unknown_authorization", "no such authorization")
            if row.status != "approved":
                raise Refusal(409, "not_capturable", f"authorization is {row.status}")
            if body.amount.currency != row.currency:
                raise Refusal(409, "currency_mismatch", "capture currency differs")
            if body.amount.minor > row.amount_authorized:
                raise Refusal(409, "exceeds_authorization", "capture exceeds the authorization")
            if body.amount.minor <= 0:
                raise Refusal(409, "zero_capture", "a zero capture is a void")
            owner = ledger.receipt_owner(conn, body.receipt.receipt_id)
            if owner is not None and owner != authorization_id:
                raise Refusal(409, "receipt_id_taken", "receipt id belongs to another session")
            processor.capture(
                key=f"capture:{authorization_id}",
                reference=row.processor_ref,
                amount_minor=body.amount.minor,
            )
            ledger.update(
                conn,
                authorization_id,
                status="captured",
                amount_captured=body.amount.minor,
                energy_wh=body.energy_wh,
                receipt_id=body.receipt.receipt_id,
                receipt=json.dumps(body.receipt.model_dump(mode="json")),
            )
            ledger.move(conn, authorization_id, "capture", body.amount.minor, row.currency)
            return StoredAnswer(
                status_code=200,
                body={
                    "authorization_id": authorization_id,
                    "status": "captured",
                    "amount_captured": _amount(body.amount.minor, row.currency),
                },
            )

        return idempotent(idempotency_key, f"authorizations.capture:{authorization_id}", body, work)

    @app.post(
        "/v1/authorizations/{authorization_id}/void",
        response_model=wire.VoidAnswer,
        responses=_errors(400, 403, 409, 422),
    )
    def void(
        authorization_id: str,
        body: wire.VoidRequest,
        request: Request,
        idempotency_key: str = Header(),
    ) -> JSONResponse:
        if (refused := not_its_terminal(request, authorization_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            row = ledger.get(conn, authorization_id)
            answer = StoredAnswer(
                status_code=200, body={"authorization_id": authorization_id, "status": "voided"}
            )
            if row is None:
                # A reversal that overtook its authorization: leave a tombstone so the late
                # authorization is refused and never holds money.
                ledger.insert(
                    conn,
                    id=authorization_id,
                    terminal_id=client_identity(request.scope) or "",
                    status="voided",
                    currency="XXX",
                    amount_requested=0,
                    card_kind="payment",
                    card_token="",
                    card_brand="",
                    card_last4="",
                    void_reason=body.reason,
                )
                return answer
            if row.status in ("declined", "voided"):
                return answer  # nothing is held
            if row.status != "approved":
                raise Refusal(409, "not_voidable", f"authorization is {row.status}")
            processor.release(key=f"release:{authorization_id}", reference=row.processor_ref)
            ledger.update(conn, authorization_id, status="voided", void_reason=body.reason)
            ledger.move(conn, authorization_id, "release", row.amount_authorized, row.currency)
            return answer

        return idempotent(idempotency_key, f"authorizations.void:{authorization_id}", body, work)

    @app.post("/v1/events", response_model=wire.EventsAnswer, responses=_errors(400, 403, 422))
    def post_events(
        body: wire.EventsRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        if (refused := not_this_terminal(request, body.terminal_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            ledger.add_events(
                conn, body.terminal_id, [(e.key, e.kind, e.detail) for e in body.events]
            )
            return StoredAnswer(status_code=200, body={"accepted": len(body.events)})

        return idempotent(idempotency_key, "events", body, work)

    @app.post(
        "/v1/meter-readings",
        response_model=wire.MeterReadingsAnswer,
        responses=_errors(400, 403, 422),
    )
    def post_meter_readings(
        body: wire.MeterReadingsRequest, request: Request, idempotency_key: str = Header()
    ) -> JSONResponse:
        """Signed meter readings (OCMF), batched; stored with their authorization. A reading
        must be OCMF and name the sending terminal as its gateway serial (GS)."""
        if (refused := not_this_terminal(request, body.terminal_id)) is not None:
            return refused

        def work(conn: Any) -> StoredAnswer:
            for reading in body.readings:
                try:
                    parsed = ocmf.parse(reading.ocmf)
                except ocmf.OcmfError as exc:
                    raise Refusal(400, "reading_invalid", str(exc)) from None
                if parsed.payload.get("GS") != body.terminal_id:
                    raise Refusal(400, "reading_invalid", "GS is not the sending terminal")
            ledger.add_readings(
                conn, body.terminal_id, [(r.session_id, r.kind, r.ocmf) for r in body.readings]
            )
            return StoredAnswer(status_code=200, body={"accepted": len(body.readings)})

        return idempotent(idempotency_key, "meter-readings", body, work)

    @app.get(
        "/v1/terminal-config",
        response_model=wire.TerminalConfigAnswer,
        responses={304: {"description": "unchanged since the ETag in If-None-Match"}},
    )
    def terminal_config(request: Request) -> Response:
        """The local authorization and deny lists, with an ETag: a terminal polls with
        If-None-Match and gets 304 while nothing changed."""
        allow, deny = ledger.token_lists()
        body = {"authorization_list": allow, "deny_list": deny}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(content=body, headers={"ETag": etag})

    @app.get("/v1/authorizations/{authorization_id}")
    def get_authorization(authorization_id: str) -> JSONResponse:
        with ledger.engine.connect() as conn:
            row = ledger.get(conn, authorization_id)
        if row is None:
            return JSONResponse(status_code=404, content=_error(404, "unknown", "no such").body)
        data = {k: v for k, v in row._mapping.items() if k not in ("receipt", "card_token")}
        return JSONResponse(content=json.loads(json.dumps(data, default=str)))

    @app.get("/v1/receipts/{receipt_id}")
    def get_receipt(receipt_id: str) -> JSONResponse:
        receipt = ledger.receipt(receipt_id)
        if receipt is None:
            return JSONResponse(status_code=404, content=_error(404, "unknown", "no receipt").body)
        return JSONResponse(content=receipt)

    @app.get("/receipts/{receipt_id}", response_class=HTMLResponse)
    def receipt_page(receipt_id: str) -> HTMLResponse:
        receipt = ledger.receipt(receipt_id)
        if receipt is None:
            return HTMLResponse("<h1>Receipt not found</h1>", status_code=404)
        return HTMLResponse(render_receipt(receipt))

    @app.get("/v1/revenue")
    def revenue() -> JSONResponse:
        return JSONResponse(content={"revenue": ledger.revenue()})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# The receipt's line names (OCPI CdrDimensionType names and the tariff's bound adjustments).
_LINE_NAMES = {
    "ENERGY": "Energy",
    "TIME": "Charging time",
    "PARKING_TIME": "Idle time",
    "FLAT": "Session fee",
    "MIN_PRICE": "Minimum price adjustment",
    "MAX_PRICE": "Maximum price adjustment",
    "LIMIT": "Limited to the authorized amount",
}


def _quantity(line: dict[str, Any]) -> str:
    if line["unit"] == "h":
        seconds = int((Decimal(line["quantity"]) * 3600).to_integral_value())
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} h"
    if line["unit"] == "kWh":
        return f"{line['quantity']} kWh"
    return ""


def render_receipt(receipt: dict[str, Any]) -> str:
    """The driver's receipt page (the display's QR code links here): every bill line with its
    quantity, amount excl. VAT and VAT rate, the VAT per rate on its base, and the totals."""
    cur = receipt["currency"]
    e = html.escape
    rows = "".join(
        f"<tr class='line'><td>{e(_LINE_NAMES.get(line['dimension'], line['dimension']))}</td>"
        f"<td>{e(_quantity(line))}</td><td>{_money(line['excl_vat'], cur)}</td>"
        f"<td>{e(line['vat_percent'])}%</td></tr>"
        for line in receipt["lines"]
    )
    vat = "".join(
        f"<tr class='vat'><td>VAT {e(v['percent'])}%</td><td>on {_money(v['base'], cur)}</td>"
        f"<td>{_money(v['vat'], cur)}</td></tr>"
        for v in receipt["vat"]
    )
    total_vat = receipt["total"] - receipt["total_excl_vat"]
    energy_kwh = f"{receipt['energy_wh'] / 1000:.3f}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Receipt</title></head><body>"
        f"<h1>Receipt {e(receipt['receipt_id'])}</h1>"
        f"<p class='station'>{e(receipt['station'])}</p>"
        f"<p class='tariff'>Tariff: {e(receipt['tariff'])}</p>"
        f"<p class='card'>{e(receipt['card'])}</p>"
        f"<p class='period'>{e(receipt['started_at'])} → {e(receipt['ended_at'])}</p>"
        f"<p class='energy'>Energy delivered: {energy_kwh} kWh</p>"
        "<table><tr><th>Item</th><th>Quantity</th><th>Excl. VAT</th><th>VAT rate</th></tr>"
        f"{rows}</table>"
        f"<table><tr><th>VAT</th><th>Base</th><th>Tax</th></tr>{vat}</table>"
        f"<p>Total excl. VAT: {_money(receipt['total_excl_vat'], cur)}</p>"
        f"<p>VAT: {_money(total_vat, cur)}</p>"
        f"<p><strong>Total: {_money(receipt['total'], cur)}</strong></p>"
        "</body></html>"
    )


def _money(minor: int, currency: str) -> str:
    return html.escape(Money(minor, currency).format())
