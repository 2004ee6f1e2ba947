"""The snapshot the driver's receipt page and invoices read (house style 17: one query
function per page): the receipt as the kiosk sent it, the authorization's captured and
refunded money and its refunds, the card's brand and last four, the signed meter readings
(OCMF) that reached the gateway, the station as the registry knows it, and the invoices issued
for the session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.invoice_schema import CREDIT, invoices
from gateway.ledger.schema import authorizations, meter_readings, movements
from gateway.ledger.station_registry import Station, station
from gateway.ledger.store import aware


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund:
    amount: int
    at: datetime
    seq: int  # the refund movement's


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceRef:
    """An invoice issued for a session (its document is fetched by `invoice_id`)."""

    invoice_id: int
    cpo_id: str
    number: int
    kind: str
    buyer_name: str
    buyer_vat_id: str
    issued_at: datetime
    superseded_by: int | None
    credits: int | None = None  # a credit note's invoice (id)
    refund_seq: int | None = None  # and the refund it credits

    @property
    def label(self) -> str:
        """The invoice number as printed: the operator's series and the number in it."""
        return invoice_label(self.cpo_id, self.number)


def invoice_label(cpo_id: str, number: int) -> str:
    return f"{cpo_id}-{number:06d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptSnapshot:
    receipt: dict[str, Any]  # the wire's Receipt as stored
    authorization_id: str
    terminal_id: str
    currency: str
    captured: int
    refunded: int
    refunds: tuple[Refund, ...]
    card_brand: str
    card_last4: str
    readings: tuple[tuple[str, str], ...]  # (kind, OCMF string), in the order they arrived
    station: Station
    invoices: tuple[InvoiceRef, ...]  # oldest first

    @property
    def current_invoice(self) -> InvoiceRef | None:
        live = [i for i in self.invoices if i.superseded_by is None and i.kind != CREDIT]
        return live[-1] if live else None

    @property
    def uncredited(self) -> bool:
        """Whether a refund has no credit note against the current invoice yet."""
        current = self.current_invoice
        if current is None:
            return False
        done = {i.refund_seq for i in self.invoices if i.credits == current.invoice_id}
        return any(r.seq not in done for r in self.refunds)


def invoice_refs(conn: sa.Connection, authorization_id: str) -> tuple[InvoiceRef, ...]:
    i = invoices
    rows = conn.execute(
        sa.select(
            i.c.id,
            i.c.cpo_id,
            i.c.number,
            i.c.kind,
            i.c.buyer_name,
            i.c.buyer_vat_id,
            i.c.issued_at,
            i.c.superseded_by,
            i.c.credits,
            i.c.refund_seq,
        )
        .where(i.c.authorization_id == authorization_id)
        .order_by(i.c.id)
    )
    return tuple(
        InvoiceRef(
            invoice_id=r.id,
            cpo_id=r.cpo_id,
            number=r.number,
            kind=r.kind,
            buyer_name=r.buyer_name,
            buyer_vat_id=r.buyer_vat_id,
            issued_at=aware(r.issued_at),
            superseded_by=r.superseded_by,
            credits=r.credits,
            refund_seq=r.refund_seq,
        )
        for r in rows
    )


def receipt_snapshot(engine: Engine, receipt_id: str) -> ReceiptSnapshot | None:
    """Everything the receipt page shows, or None when no captured session has this id."""
    a = authorizations
    with engine.connect() as conn:
        row = conn.execute(sa.select(a).where(a.c.receipt_id == receipt_id)).first()
        if row is None or row.receipt is None:
            return None
        refunds = conn.execute(
            sa.select(movements.c.amount, movements.c.at, movements.c.seq)
            .where(movements.c.authorization_id == row.id, movements.c.kind == "refund")
            .order_by(movements.c.seq)
        ).all()
        readings = conn.execute(
            sa.select(meter_readings.c.kind, meter_readings.c.ocmf)
            .where(meter_readings.c.authorization_id == row.id)
            .order_by(meter_readings.c.seq)
        ).all()
        issued = invoice_refs(conn, row.id)
    return ReceiptSnapshot(
        receipt=json.loads(row.receipt),
        authorization_id=row.id,
        terminal_id=row.terminal_id,
        currency=row.currency,
        captured=int(row.amount_captured or 0),
        refunded=int(row.amount_refunded or 0),
        refunds=tuple(
            Refund(amount=int(r.amount), at=aware(r.at), seq=int(r.seq)) for r in refunds
        ),
        card_brand=row.card_brand,
        card_last4=row.card_last4,
        readings=tuple((r.kind, r.ocmf) for r in readings),
        station=station(engine, row.terminal_id),
        invoices=issued,
    )
