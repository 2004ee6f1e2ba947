"""Issuing invoices and keeping their documents (tables in `invoice_schema`).

Issuing is one transaction: lock the session's authorization row (so two requests for the
same session cannot both issue), see whether the invoice asked for exists already (a simple
invoice once per session; a business invoice again only for other buyer details), take the
next number of the seller's series (`UPDATE cpos ... RETURNING`: the row lock orders
concurrent issuers, and the number is used by the row stored in the same transaction, so the
series has no gaps), fix the document's content, store it, and mark the invoice it replaces.
The PDF is made from the stored content outside that transaction (it takes a few hundred
milliseconds) and stored once (`UPDATE ... WHERE pdf IS NULL`): whoever stores first wins,
and every download returns those bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.credit_notes import ComposeCredit, credit, next_number
from gateway.ledger.invoice_schema import BUSINESS, CREDIT, INVOICE_KINDS, SIMPLE, cpos, invoices
from gateway.ledger.receipt_view import invoice_refs
from gateway.ledger.schema import CAPTURED, authorizations
from gateway.ledger.station_registry import Cpo
from gateway.ledger.web_schema import stations

# A session's business invoices: enough to correct a typo or two, not a way to run through
# an operator's series.
MAX_BUSINESS = 3

# (seller, its invoice number, the issue time, the number of the invoice it replaces or "")
# -> the document's content (JSON-able).
Compose = Callable[[Cpo, int, datetime, str], dict[str, Any]]


class InvoiceRefused(ValueError):
    """No invoice can be issued: the session is not captured, its station has no seller with
    a VAT number, or it has had its share of business invoices."""


def issue(
    engine: Engine,
    *,
    authorization_id: str,
    kind: str,
    at: datetime,
    compose: Compose,
    buyer_name: str = "",
    buyer_vat_id: str = "",
    credit_note: ComposeCredit | None = None,
) -> int:
    """The id of the session's invoice of `kind` for the buyer: the one already issued, or a
    new one, numbered next in its seller's series, that supersedes the current one. With
    `credit_note`, a new invoice for a session with refunds gets their credit notes in the
    same transaction (`gateway.ledger.credit_notes`)."""
    if kind not in INVOICE_KINDS or (kind == BUSINESS) != bool(buyer_name and buyer_vat_id):
        raise ValueError(f"invoice kind {kind!r} with buyer {buyer_name!r}/{buyer_vat_id!r}")
    a = authorizations
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(a.c.id, a.c.status, a.c.terminal_id)
            .where(a.c.id == authorization_id)
            .with_for_update()
        ).first()
        if row is None or row.status != CAPTURED:
            raise InvoiceRefused("only a captured session has an invoice")
        issued = invoice_refs(conn, authorization_id)
        current = next(
            (i for i in reversed(issued) if i.superseded_by is None and i.kind != CREDIT), None
        )
        if current is not None and (
            kind == SIMPLE
            or (current.buyer_name, current.buyer_vat_id) == (buyer_name, buyer_vat_id)
        ):
            return current.invoice_id
        if sum(i.kind == BUSINESS for i in issued) >= MAX_BUSINESS:
            raise InvoiceRefused(f"a session has at most {MAX_BUSINESS} business invoices")
        seller_row = conn.execute(
            sa.select(cpos)
            .select_from(cpos.join(stations, stations.c.cpo_id == cpos.c.id))
            .where(stations.c.terminal_id == row.terminal_id)
        ).first()
        if seller_row is None or not seller_row.vat_id:
            raise InvoiceRefused("the station has no seller with a VAT number")
        number = next_number(conn, seller_row.id)
        seller = Cpo(
            cpo_id=seller_row.id,
            name=seller_row.name,
            address=seller_row.address,
            vat_id=seller_row.vat_id,
        )
        document = compose(seller, number, at, "" if current is None else current.label)
        invoice_id = int(
            conn.execute(
                sa.insert(invoices)
                .values(
                    cpo_id=seller.cpo_id,
                    number=number,
                    authorization_id=authorization_id,
                    kind=kind,
                    buyer_name=buyer_name,
                    buyer_vat_id=buyer_vat_id,
                    issued_at=at,
                    supersedes=None if current is None else current.invoice_id,
                    document=json.dumps(document, sort_keys=True, ensure_ascii=False),
                )
                .returning(invoices.c.id)
            ).scalar_one()
        )
        if current is not None:
            # The invoice it replaces, and that invoice's credit notes: the refunds are
            # credited again against the new one.
            conn.execute(
                sa.update(invoices)
                .where(
                    sa.or_(
                        invoices.c.id == current.invoice_id,
                        invoices.c.credits == current.invoice_id,
                    ),
                    invoices.c.superseded_by.is_(None),
                )
                .values(superseded_by=invoice_id)
            )
        if credit_note is not None:
            credit(conn, authorization_id, at, credit_note)
    return invoice_id


def document_pdf(
    engine: Engine, invoice_id: int, render: Callable[[dict[str, Any]], bytes]
) -> bytes | None:
    """The invoice's PDF (made from its stored content the first time, then stored), or None
    when there is no such invoice."""
    i = invoices
    with engine.connect() as conn:
        row = conn.execute(sa.select(i.c.document, i.c.pdf).where(i.c.id == invoice_id)).first()
    if row is None:
        return None
    if row.pdf is not None:
        return bytes(row.pdf)
    pdf = render(json.loads(row.document))
    with engine.begin() as conn:
        conn.execute(
            sa.update(i)
            .where(i.c.id == invoice_id, i.c.pdf.is_(None))
            .values(pdf=pdf, pdf_sha256=hashlib.sha256(pdf).hexdigest())
        )
        stored = conn.execute(sa.select(i.c.pdf).where(i.c.id == invoice_id)).scalar_one()
    return bytes(stored)
