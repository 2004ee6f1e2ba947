"""The public receipt: as JSON (`/v1/receipts/{id}`) and as the driver's page
(`/receipts/{id}`, the target of the QR code on the kiosk's receipt screen). The receipt id is
unguessable (16 characters of a hash of the session id), so these routes need no identity.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, JSONResponse

from gateway import wire
from gateway.ledger import Ledger
from gateway.payments import error_body
from terminal.money import Money

ReceiptId = Annotated[str, Path(pattern=wire.RECEIPT_ID_PATTERN)]


def receipt_routes(ledger: Ledger) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/receipts/{receipt_id}", responses={404: {"model": wire.ErrorAnswer}})
    def get_receipt(receipt_id: ReceiptId) -> JSONResponse:
        receipt = ledger.receipt(receipt_id)
        if receipt is None:
            return JSONResponse(status_code=404, content=error_body("unknown", "no receipt"))
        return JSONResponse(content=receipt)

    @router.get(
        "/receipts/{receipt_id}",
        response_class=HTMLResponse,
        responses={404: {"description": "no such receipt", "content": {"text/html": {}}}},
    )
    def receipt_page(receipt_id: ReceiptId) -> HTMLResponse:
        receipt = ledger.receipt(receipt_id)
        if receipt is None:
            return HTMLResponse("<h1>Receipt not found</h1>", status_code=404)
        return HTMLResponse(render_receipt(receipt))

    return router


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
        + (
            f"<p class='refunded'>Refunded: {_money(receipt['refunded'], cur)}</p>"
            if receipt.get("refunded")
            else ""
        )
        + "</body></html>"
    )


def _money(minor: int, currency: str) -> str:
    return html.escape(Money(minor, currency).format())
