"""The driver's portal: the history of every session paid with the driver's linked cards and
tokens (filters, totals, CSV), each session's page with its receipt, linking a card by a proof
of possession, and the driver's RFID tokens (name, block when lost, unblock).

Proof of possession for a card or token, either of two: the receipt id of one of its sessions,
the card's last four digits and the amount captured, all three; or the one-time code a kiosk
showed after the tap (`gateway.ledger.link_codes`). Attempts of both kinds count together
and are rate-limited per driver. Another
driver's session is answered exactly like one that does not exist (404).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from gateway import wire
from gateway.ledger import link_codes
from gateway.ledger.invoice_store import document_pdf
from gateway.ledger.operators import Operators
from gateway.ledger.passkey_store import PasskeyStore
from gateway.ledger.token_admin import last_changed_by, list_of, put_token
from gateway.web import invoice_pdf
from gateway.web.portal_frame import Driver, PortalFrame
from gateway.web.templating import page_headers
from gateway.web.throttle import Limit, Throttle
from terminal.money import minor_exponent

HOME = "/account"
CARDS = "/account/cards"
SessionId = Annotated[str, Path(pattern=wire.ID_PATTERN)]
InvoiceId = Annotated[int, Path(ge=1, le=2**62)]
PROOFS = Limit(attempts=10, window=timedelta(hours=1))  # guesses of receipt, digits, amount
NOT_FOUND = "No payment matches these details."
NO_CODE = "This code is not valid. A code from the charger works once, within 5 minutes."


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: {"sessions": 0, "paid": 0, "refunded": 0, "energy_wh": 0}
    )
    for r in rows:
        if r["status"] != "captured":
            continue
        t = totals[r["currency"]]
        t["sessions"] += 1
        t["paid"] += int(r["amount_captured"] or 0)
        t["refunded"] += int(r["amount_refunded"] or 0)
        t["energy_wh"] += int(r["energy_wh"] or 0)
    return dict(sorted(totals.items()))


def portal_routes(frame: PortalFrame, throttle: Throttle) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    drivers = frame.drivers
    engine = drivers.engine
    link_codes_store = link_codes.LinkCodes(engine, drivers.clock)

    def history(viewer: Driver, request: Request) -> tuple[list[dict[str, Any]], dict[str, str]]:
        q = request.query_params
        filters = {
            "from": q.get("from", ""),
            "to": q.get("to", ""),
            "station": q.get("station", "")[:64],
        }
        rows = drivers.history(
            viewer.driver_id,
            first=_day(filters["from"]),
            last=_day(filters["to"]),
            station=filters["station"],
        )
        return rows, filters

    @router.get(HOME)
    def home(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        rows, filters = history(viewer, request)
        stations = sorted({r["terminal_id"] for r in drivers.history(viewer.driver_id)})
        return frame.render(
            viewer,
            "account/history.html",
            HOME,
            {
                "rows": rows,
                "invoices": drivers.invoices(viewer.driver_id, [r["id"] for r in rows]),
                "totals": _totals(rows),
                "filters": filters,
                "stations": stations,
                "query": {k: v for k, v in filters.items() if v},
            },
        )

    @router.get(HOME + "/invoices/{invoice_id}.pdf")
    def invoice(request: Request, invoice_id: InvoiceId) -> Response:
        """One of the driver's invoices; another driver's is the same 404 as a missing one."""
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        pdf = (
            document_pdf(engine, invoice_id, invoice_pdf.render)
            if drivers.owns_invoice(viewer.driver_id, invoice_id)
            else None
        )
        if pdf is None:
            return frame.refuse(viewer, 404, "Not found", "No invoice of yours has this id.")
        return Response(
            pdf,
            media_type=invoice_pdf.MEDIA_TYPE,
            headers=page_headers(
                {"Content-Disposition": f'attachment; filename="invoice-{invoice_id}.pdf"'}
            ),
        )

    @router.get(HOME + "/sessions.csv")
    def history_csv(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        rows, _filters = history(viewer, request)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "session",
                "started_utc",
                "station",
                "status",
                "currency",
                "paid",
                "refunded",
                "energy_kwh",
                "receipt",
            ]
        )
        for r in rows:
            scale = -minor_exponent(r["currency"])
            writer.writerow(
                [
                    r["id"],
                    r["created_at"].isoformat(),
                    r["terminal_id"],
                    r["status"],
                    r["currency"],
                    str(Decimal(int(r["amount_captured"] or 0)).scaleb(scale)),
                    str(Decimal(int(r["amount_refunded"] or 0)).scaleb(scale)),
                    str(Decimal(int(r["energy_wh"] or 0)).scaleb(-3)),
                    r["receipt_id"] or "",
                ]
            )
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers=page_headers({"Content-Disposition": 'attachment; filename="sessions.csv"'}),
        )

    @router.get(HOME + "/sessions/{session_id}")
    def session_page(request: Request, session_id: SessionId) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        found = drivers.session(viewer.driver_id, session_id)
        if found is None:
            return frame.refuse(viewer, 404, "Not found", "No session of yours has this id.")
        invoices = drivers.invoices(viewer.driver_id, [session_id]).get(session_id, [])
        return frame.render(
            viewer, "account/session.html", HOME, {"s": found, "invoices": invoices}
        )

    def cards_page(
        viewer: Driver, *, error: str = "", notice: str = "", status_code: int = 200
    ) -> Response:
        cards = drivers.cards(viewer.driver_id)
        for card in cards:
            card["list"] = list_of(engine, card["card_token"])
        return frame.render(
            viewer,
            "account/cards.html",
            CARDS,
            {
                "cards": cards,
                "error": error,
                "notice": notice,
                "passkeys": len(PasskeyStore(engine, drivers.clock).of(viewer.driver_id)),
            },
            status_code=status_code,
        )

    @router.get(CARDS)
    def cards(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        return cards_page(viewer)

    @router.post(CARDS)
    def link_card(
        request: Request,
        *,
        receipt_id: str = Form(""),
        last4: str = Form(""),
        amount: str = Form(""),
        label: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        if not throttle.allow(f"portal-proof:{viewer.driver_id}", PROOFS):
            return cards_page(
                viewer, error="Too many attempts. Try again in an hour.", status_code=429
            )
        receipt_id, last4 = receipt_id.strip().upper(), last4.strip()
        if not re.fullmatch(wire.RECEIPT_ID_PATTERN, receipt_id) or not re.fullmatch(
            r"([0-9]{4})?", last4
        ):
            return cards_page(viewer, error=NOT_FOUND, status_code=400)
        found = drivers.find_for_proof(receipt_id)
        # An RFID token has no digits to give (the kiosk reads its UID only): its receipt and
        # amount are the proof. A payment card needs its last four as well.
        if (
            found is None
            or found.card_last4 != last4
            or not _same_amount(amount, found.amount_captured, found.currency)
        ):
            return cards_page(viewer, error=NOT_FOUND, status_code=400)
        kind = "Token" if found.card_kind == "id_token" else "Card"
        name = label.strip()[:64] or f"{kind} {found.card_last4 or receipt_id[-4:]}"
        if not drivers.link(viewer.driver_id, found.card_token, found.card_kind, name):
            return cards_page(
                viewer, error="This card is linked to another account.", status_code=409
            )
        return RedirectResponse(CARDS, status_code=303, headers=page_headers())

    @router.post(CARDS + "/code")
    def link_by_code(
        request: Request, *, code: str = Form(""), label: str = Form(""), csrf: str = Form("")
    ) -> Response:
        """Link the card or token a kiosk's link code names (`gateway.ledger.link_codes`):
        wrong, expired and used codes get one answer; the guesses count with the receipt
        proofs'."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        if not throttle.allow(f"portal-proof:{viewer.driver_id}", PROOFS):
            return cards_page(
                viewer, error="Too many attempts. Try again in an hour.", status_code=429
            )
        typed = link_codes.normalise(code)
        found = link_codes_store.use(typed) if typed is not None else None
        if found is None:
            return cards_page(viewer, error=NO_CODE, status_code=400)
        kind = "Token" if found.card_kind == "id_token" else "Card"
        name = label.strip()[:64] or f"{kind} {found.last4 or found.card_token[-4:]}"
        if not drivers.link(viewer.driver_id, found.card_token, found.card_kind, name):
            return cards_page(
                viewer, error="This card is linked to another account.", status_code=409
            )
        return RedirectResponse(CARDS, status_code=303, headers=page_headers())

    @router.post(CARDS + "/token")
    def token_action(
        request: Request,
        token: str = Form(""),
        action: str = Form(""),
        label: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        """Rename a card or token; block a lost RFID token (the kiosks decline it from their
        next sync) or unblock one the driver blocked."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        if not drivers.owns(viewer.driver_id, token):
            return frame.refuse(viewer, 404, "Not found", "No card or token of yours is this one.")
        actor = f"driver:{viewer.driver_id}"
        if action == "rename":
            name = label.strip()[:64]
            if not name:
                return cards_page(viewer, error="Give a name.", status_code=400)
            drivers.rename(viewer.driver_id, token, name)
        elif action == "block":
            put_token(engine, token, "deny", at=drivers.clock(), audit=_audit(frame), actor=actor)
        elif action == "unblock":
            if list_of(engine, token) != "deny" or last_changed_by(engine, token) != actor:
                return cards_page(
                    viewer, error="Only a block you made here can be lifted here.", status_code=409
                )
            put_token(engine, token, None, at=drivers.clock(), audit=_audit(frame), actor=actor)
        else:
            return cards_page(viewer, error="Unknown action.", status_code=400)
        return RedirectResponse(CARDS, status_code=303, headers=page_headers())

    return router


def _audit(frame: PortalFrame) -> Any:
    """The audit log's writer (a driver's block is audited like an operator's change)."""
    return Operators(frame.drivers.engine, frame.drivers.clock).audit


def _same_amount(text: str, captured: int | None, currency: str) -> bool:
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return False
    if not value.is_finite() or captured is None:
        return False
    return value.scaleb(minor_exponent(currency)) == Decimal(int(captured))
