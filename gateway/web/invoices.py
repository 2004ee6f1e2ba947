"""The driver's invoices for a captured session, from its receipt page: the invoice as a PDF
(a simple one, issued on its first download) and a business invoice with the company's name
and VAT number, which supersedes the session's current invoice (`gateway.ledger.invoice_store`
numbers and keeps them; `invoice_pdf` makes the PDF).

The receipt id in the address is what lets a driver at these routes (as for the receipt page);
an invoice id is honoured only for an invoice of that receipt's session. The business invoice
form carries a double-submit CSRF token (`gateway.web.sessions`), like the portal's forms
before sign-in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway import wire
from gateway.ledger import Ledger
from gateway.ledger.invoice_schema import BUSINESS, SIMPLE
from gateway.ledger.invoice_store import InvoiceRefused, document_pdf, issue
from gateway.ledger.receipt_view import ReceiptSnapshot, invoice_label, receipt_snapshot
from gateway.ledger.station_registry import Cpo, RegistryError, vat_id
from gateway.web import invoice_pdf
from gateway.web.credit_note import compose_credit
from gateway.web.languages import negotiate, page_words
from gateway.web.receipt_more import Row
from gateway.web.sessions import pre_session_ok
from gateway.web.templating import page_headers
from terminal.core.words import N_, Words

ReceiptId = Annotated[str, PathParam(pattern=wire.RECEIPT_ID_PATTERN)]
InvoiceId = Annotated[int, PathParam(ge=1, le=2**62)]

# Shows the receipt page again with a message (the form's refusal): (request, receipt id,
# language, message, status) -> the page.
ShowReceipt = Callable[[Request, str, str, str, int], Response]
# The receipt page's rows and total for a snapshot, in some words.
PageRows = Callable[[ReceiptSnapshot, Words], tuple[tuple[Row, ...], Row]]


def compose(
    snapshot: ReceiptSnapshot,
    rows: tuple[Row, ...],
    total: Row,
    words: Words,
    *,
    language: str,
    buyer: tuple[str, str] | None,
) -> Callable[[Cpo, int, datetime, str], dict[str, Any]]:
    """The content of the session's next invoice, once its seller and number are known: every
    text in the invoice's language, the rows exactly as on the receipt page (the kiosk's
    receipt rows: each line with its unit price, the total excl. VAT, VAT per rate, the total
    = the capture)."""
    _ = words.text
    receipt, station = snapshot.receipt, snapshot.station
    started = datetime.fromisoformat(receipt["started_at"])
    ended = datetime.fromisoformat(receipt["ended_at"])

    def document(seller: Cpo, number: int, at: datetime, replaces: str) -> dict[str, Any]:
        label = invoice_label(seller.cpo_id, number)
        notes = [_("Times are in the time zone {}.").format(station.timezone)]
        if replaces:
            notes.insert(0, _("This invoice replaces invoice {}.").format(replaces))
        return {
            "language": language,
            "issued_at": at.isoformat(),
            "heading": _("Invoice {}").format(label),
            "facts": [
                [_("Invoice number"), label],
                [_("Date of issue"), words.when(at)],
                [_("Date of supply"), f"{words.when(started)} - {words.when(ended)}"],
                [_("Receipt number"), receipt["receipt_id"]],
                [_("Charging station"), station.name or receipt["station"]],
                *([[_("Address"), station.address]] if station.address else []),
            ],
            "seller_label": _("Seller"),
            "seller": [seller.name, seller.address, _("VAT number: {}").format(seller.vat_id)],
            "buyer_label": _("Buyer"),
            "buyer": [] if buyer is None else [buyer[0], _("VAT number: {}").format(buyer[1])],
            "rows": [[r.label, r.value] for r in rows],
            "total": [total.label, total.value],
            "notes": notes,
        }

    return document


def invoice_routes(ledger: Ledger, show: ShowReceipt, page_rows: PageRows) -> APIRouter:
    """`page_rows(snapshot, words)` gives the receipt page's rows and total for a snapshot."""
    router = APIRouter(include_in_schema=False)
    engine = ledger.engine

    def pdf_answer(invoice_id: int, name: str) -> Response:
        pdf = document_pdf(engine, invoice_id, invoice_pdf.render)
        if pdf is None:
            return Response("no such invoice", status_code=404, headers=page_headers())
        return Response(
            pdf,
            media_type=invoice_pdf.MEDIA_TYPE,
            headers=page_headers({"Content-Disposition": f'attachment; filename="{name}.pdf"'}),
        )

    def issue_for(snapshot: ReceiptSnapshot, language: str, buyer: tuple[str, str] | None) -> int:
        words = page_words(language, snapshot.station.zone)
        rows, total = page_rows(snapshot, words)
        return issue(
            engine,
            authorization_id=snapshot.authorization_id,
            kind=SIMPLE if buyer is None else BUSINESS,
            at=ledger.clock(),
            compose=compose(
                snapshot,
                rows,
                total,
                words,
                language=language,
                buyer=buyer,
            ),
            buyer_name="" if buyer is None else buyer[0],
            buyer_vat_id="" if buyer is None else buyer[1],
            credit_note=compose_credit,
        )

    @router.get("/receipts/{receipt_id}/invoice.pdf")
    def current_invoice(
        receipt_id: ReceiptId, lang: Annotated[str | None, Query()] = None
    ) -> Response:
        snapshot = receipt_snapshot(engine, receipt_id)
        if snapshot is None:
            return Response("no such receipt", status_code=404, headers=page_headers())
        try:
            invoice_id = issue_for(snapshot, negotiate(lang, None), None)
        except InvoiceRefused as exc:
            return Response(str(exc), status_code=409, headers=page_headers())
        return pdf_answer(invoice_id, f"invoice-{receipt_id}")

    @router.get("/receipts/{receipt_id}/invoices/{invoice_id}.pdf")
    def one_invoice(receipt_id: ReceiptId, invoice_id: InvoiceId) -> Response:
        snapshot = receipt_snapshot(engine, receipt_id)
        found = (
            None
            if snapshot is None
            else next((i for i in snapshot.invoices if i.invoice_id == invoice_id), None)
        )
        if found is None:  # not this receipt's: the same answer as none at all
            return Response("no such invoice", status_code=404, headers=page_headers())
        return pdf_answer(found.invoice_id, f"invoice-{found.label}")

    @router.post("/receipts/{receipt_id}/invoice")
    async def business_invoice(
        request: Request,
        receipt_id: ReceiptId,
        *,
        lang: Annotated[str | None, Query()] = None,
        company: Annotated[str, Form()] = "",
        vat_number: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        language = negotiate(lang, request.headers.get("accept-language"))
        if not pre_session_ok(request, csrf):
            return await run_in_threadpool(
                show,
                request,
                receipt_id,
                language,
                N_("The form had no valid token. Open the page again."),
                403,
            )
        name = " ".join(company.split())
        if not 1 <= len(name) <= 128:
            message = N_("Enter the company's name.")
            return await run_in_threadpool(show, request, receipt_id, language, message, 400)
        try:
            buyer_vat = vat_id("vat_number", vat_number)
        except RegistryError:
            message = N_("Enter the VAT number with its country code.")
            return await run_in_threadpool(show, request, receipt_id, language, message, 400)
        snapshot = await run_in_threadpool(receipt_snapshot, engine, receipt_id)
        if snapshot is None:
            return Response("no such receipt", status_code=404, headers=page_headers())
        try:
            await run_in_threadpool(issue_for, snapshot, language, (name, buyer_vat))
        except InvoiceRefused:
            return await run_in_threadpool(
                show,
                request,
                receipt_id,
                language,
                N_("No more invoices can be issued for this session."),
                409,
            )
        return RedirectResponse(
            f"/receipts/{receipt_id}?lang={language}#invoices",
            status_code=303,
            headers=page_headers(),
        )

    return router
