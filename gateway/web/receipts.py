"""The public receipt: as JSON (`/v1/receipts/{id}`) and as the driver's page
(`/receipts/{id}`, the target of the QR code on the kiosk's receipt screen). The receipt id is
unguessable (16 characters of a hash of the session id), so these routes need no identity.

The page shows the receipt as the kiosk's receipt screen does, in the driver's language
(`gateway.web.languages`): the same rows from the same function
(`terminal.core.screens.receipt_fields`: each line incl. VAT with its quantity and unit price,
the total excl. VAT, the VAT per rate on its base, the total), so the phone and the screen
cannot disagree. A receipt from a kiosk that sent only `excl_vat` per line (the wire's first
form) lists its lines excl. VAT, said on each line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway import wire
from gateway.ledger import Ledger
from gateway.ledger.credit_notes import credit_refunds
from gateway.ledger.receipt_view import ReceiptSnapshot, receipt_snapshot
from gateway.payments.answers import error_body
from gateway.web.credit_note import compose_credit
from gateway.web.invoices import invoice_routes
from gateway.web.languages import negotiate, page_words
from gateway.web.receipt_more import Row, receipt_more
from gateway.web.sessions import pre_session_token, remember_pre_session
from gateway.web.templating import Pages, page_headers
from gateway.web.transparency import MEDIA_TYPE as TRANSPARENCY_MEDIA_TYPE
from gateway.web.transparency import transparency_xml
from terminal.core.bill_wire import bill_from_wire
from terminal.core.screens import BILL_LINES, hms, receipt_fields
from terminal.core.words import Words
from terminal.money import Money

__all__ = ["ReceiptPage", "Row", "receipt_page", "receipt_routes"]

ReceiptId = Annotated[str, Path(pattern=wire.RECEIPT_ID_PATTERN)]


def receipt_routes(
    ledger: Ledger, pages: Pages, reading_key: Callable[[str], str] | None = None
) -> APIRouter:
    """`reading_key(terminal id)`: the OCMF public key `provision` recorded for a device
    (the card vault's fleets), used when the station registry has none for the terminal."""
    router = APIRouter()
    engine = ledger.engine

    def snapshot_of(receipt_id: str) -> ReceiptSnapshot | None:
        snapshot = receipt_snapshot(engine, receipt_id)
        if snapshot is None or snapshot.station.ocmf_public_key or reading_key is None:
            return snapshot
        key = reading_key(snapshot.terminal_id)
        if not key:
            return snapshot
        return replace(snapshot, station=replace(snapshot.station, ocmf_public_key=key))

    @router.get("/v1/receipts/{receipt_id}", responses={404: {"model": wire.ErrorAnswer}})
    def get_receipt(receipt_id: ReceiptId) -> JSONResponse:
        receipt = ledger.receipt(receipt_id)
        if receipt is None:
            return JSONResponse(status_code=404, content=error_body("unknown", "no receipt"))
        return JSONResponse(content=receipt)

    def show(
        request: Request, receipt_id: str, language: str, error: str = "", status: int = 200
    ) -> Response:
        """The receipt page (with `error`, the business invoice form's refusal)."""
        path = f"/receipts/{receipt_id}"
        snapshot = snapshot_of(receipt_id)
        if snapshot is not None and snapshot.uncredited:
            # A refund the operator's request did not credit (the gateway stopped between
            # the two): credited now, once (`gateway.ledger.credit_notes`).
            credit_refunds(
                engine,
                authorization_id=snapshot.authorization_id,
                at=ledger.clock(),
                compose=compose_credit,
            )
            snapshot = snapshot_of(receipt_id)
        if snapshot is None:
            return pages.render_page(
                "not_found.html", path=path, language=language, status_code=404
            )
        words = page_words(language, snapshot.station.zone)
        token = pre_session_token(request)
        response = pages.render_page(
            "receipt.html",
            path=path,
            language=language,
            words=words,
            status_code=status,
            page=receipt_page(stored(snapshot), words, zone=snapshot.station.timezone),
            more=receipt_more(snapshot, words, path=path, language=language),
            csrf=token,
            error=error,
        )
        remember_pre_session(response, token)
        return response

    @router.get(
        "/receipts/{receipt_id}",
        response_class=HTMLResponse,
        responses={404: {"description": "no such receipt", "content": {"text/html": {}}}},
    )
    def receipt_html(
        request: Request,
        receipt_id: ReceiptId,
        lang: Annotated[str | None, Query(description="en, de, fr or nl")] = None,
        accept_language: Annotated[str | None, Header()] = None,
    ) -> Response:
        return show(request, receipt_id, negotiate(lang, accept_language))

    @router.get("/receipts/{receipt_id}/readings.xml", include_in_schema=False)
    def readings_xml(receipt_id: ReceiptId) -> Response:
        """The session's signed readings for the S.A.F.E. transparency software."""
        snapshot = snapshot_of(receipt_id)
        if snapshot is None:
            return Response("no such receipt", status_code=404, headers=page_headers())
        disposition = f'attachment; filename="readings-{receipt_id}.xml"'
        return Response(
            transparency_xml(snapshot.readings, snapshot.station.ocmf_public_key),
            media_type=TRANSPARENCY_MEDIA_TYPE,
            headers=page_headers({"Content-Disposition": disposition}),
        )

    def page_rows(snapshot: ReceiptSnapshot, words: Words) -> tuple[tuple[Row, ...], Row]:
        page = receipt_page(snapshot.receipt, words, zone=snapshot.station.timezone)
        return page.rows, page.total  # as captured: refunds are not on the invoice

    router.include_router(invoice_routes(ledger, show, page_rows))
    return router


def stored(snapshot: ReceiptSnapshot) -> dict[str, Any]:
    """The receipt as `Ledger.receipt` answers it: with `refunded` once there are refunds."""
    if not snapshot.refunded:
        return snapshot.receipt
    return {**snapshot.receipt, "refunded": snapshot.refunded}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptPage:
    """What the receipt page shows, in one language: every value already in words."""

    receipt_id: str
    about: tuple[str, ...]  # the station, the tariff, the session's time
    rows: tuple[Row, ...]  # the kiosk's receipt rows, all but the total
    total: Row
    refunded: Row | None  # the operator's refunds since, when there are any


def receipt_page(receipt: dict[str, Any], words: Words, *, zone: str = "UTC") -> ReceiptPage:
    """The receipt as stored (the wire's `Receipt`, plus `refunded`) in the words of a page,
    whose times are in `zone` (the name the page says they are in)."""
    _ = words.text
    currency = receipt["currency"]
    total = Money(receipt["total"], currency)
    bill = bill_from_wire(receipt, currency)
    fields = receipt_fields(
        energy_wh=receipt["energy_wh"],
        card=receipt["card"],
        bill=bill,
        total=total,
        words=words,
    )
    if bill is None:
        fields[2:2] = _excl_vat_fields(receipt, words)
    started = datetime.fromisoformat(receipt["started_at"])
    ended = datetime.fromisoformat(receipt["ended_at"])
    refunded = receipt.get("refunded")
    rows = enumerate(fields[:-1])
    return ReceiptPage(
        receipt_id=receipt["receipt_id"],
        about=(
            receipt["station"],
            _("Tariff: {}").format(receipt["tariff"]),
            f"{words.when(started)} - {words.clock(ended)} {zone}",
        ),
        # receipt_fields: the energy, the card (a name, which may wrap), the bill, the total.
        rows=tuple(Row(label, value, amount=index != 1) for index, (label, value) in rows),
        total=Row(*fields[-1]),
        refunded=(
            Row(_("Refunded"), words.number(str(Money(refunded, currency)))) if refunded else None
        ),
    )


def _excl_vat_fields(receipt: dict[str, Any], words: Words) -> list[tuple[str, str]]:
    """The rows of a receipt whose lines carry only `excl_vat`: each line excl. VAT (said on
    the line), the total excl. VAT and the VAT per rate on its base."""
    _ = words.text
    currency = receipt["currency"]
    fields: list[tuple[str, str]] = []
    for line in receipt["lines"]:
        name = _(BILL_LINES.get(line["dimension"], line["dimension"]))
        quantity = Decimal(line["quantity"])
        if line["unit"] == "kWh":
            name = f"{name} {quantity:.3f} kWh"
        elif line["unit"] == "h":
            name = f"{name} {hms(int((quantity * 3600).to_integral_value(ROUND_HALF_UP)))}"
        fields.append(
            (
                words.number(_("{} (excl. VAT)").format(name)),
                words.number(str(Money(line["excl_vat"], currency))),
            )
        )
    fields.append((_("Excl. VAT"), words.number(str(Money(receipt["total_excl_vat"], currency)))))
    fields += [
        (
            words.number(
                _("VAT {}% on {}").format(
                    f"{Decimal(v['percent']).normalize():f}", Money(v["base"], currency)
                )
            ),
            words.number(str(Money(v["vat"], currency))),
        )
        for v in receipt["vat"]
    ]
    return fields
