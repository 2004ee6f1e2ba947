"""Credit notes: a refund of an invoiced session credited by a document of its own.

EU VAT Directive 2006/112/EC: a refund reduces the taxable amount (Art. 90) and the document
that says so is treated as an invoice (Art. 219), so a credit note has a number in the same
consecutive series as the seller's invoices (Art. 226(2)), names the invoice it corrects, and
states the amounts taken back, negative, with the VAT per rate.

Rules written down:
- One credit note per refund and invoice (the unique index `invoices_credit_once` on
  `(credits, refund_seq)`): `credit` issues one for each refund movement of the session that
  the current invoice has none for, in the caller's transaction. The operator's refund calls it
  right after the refund is recorded (`credit_refunds`); issuing an invoice for a session that
  already has refunds calls it in the invoice's own transaction; the receipt page calls it
  when it finds a refund not yet credited (a gateway stopped between the two). However often
  it runs, each refund is credited once.
- A new invoice that supersedes the current one (a business invoice) supersedes its credit
  notes too, and the refunds are credited again against the new invoice.
- Amounts per VAT rate: a refund is shared among the receipt's rates in proportion to each
  rate's amount incl. VAT, cumulatively: the refunds so far (this one included) get
  `share(so far)`, rounded to minor units by largest remainder, with each rate's VAT
  `vat * share / gross` rounded half to even; this credit note is `share(so far) -
  share(before)`. So the credit notes of refunds that add up to the capture add up, rate by
  rate, to the invoice's own figures exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.invoice_schema import CREDIT, cpos, invoices
from gateway.ledger.receipt_view import invoice_label, invoice_refs
from gateway.ledger.schema import authorizations, movements
from gateway.ledger.store import aware
from gateway.ledger.web_schema import stations


@dataclass(frozen=True, slots=True, kw_only=True)
class RateShare:
    """The part of an amount at one VAT rate (minor units; negative on a credit note)."""

    percent: str
    base: int
    vat: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Credited:
    """What a credit note says, before its words: the invoice it corrects (its label and its
    stored document, whose language, seller and buyer it repeats), the refund, and the
    amounts credited (negative) per rate."""

    invoice_label: str
    invoice: dict[str, Any]
    currency: str
    zone: str
    refund_amount: int
    refunded_at: datetime
    rates: tuple[RateShare, ...]

    @property
    def total(self) -> int:
        return sum(r.base + r.vat for r in self.rates)


# (what is credited, the credit note's number as printed, its issue time) -> its content.
ComposeCredit = Callable[[Credited, str, datetime], dict[str, Any]]


def next_number(conn: Connection, cpo_id: str) -> int:
    """The next number of the seller's series, taken (the row stays locked until the caller's
    transaction ends, so the number is used by a row stored in that transaction or by none)."""
    taken = conn.execute(
        sa.update(cpos)
        .where(cpos.c.id == cpo_id)
        .values(next_invoice=cpos.c.next_invoice + 1)
        .returning(cpos.c.next_invoice)
    ).scalar_one()
    return int(taken) - 1


def shares(receipt: dict[str, Any], amount: int) -> tuple[RateShare, ...]:
    """`amount` (at most the receipt's total) shared among the receipt's VAT rates (rule in
    the module's docstring); all of the total gives each rate's own base and VAT."""
    rates = [(str(v["percent"]), int(v["base"]), int(v["vat"])) for v in receipt["vat"]]
    if not rates:
        rates = [("0", int(receipt["total"]), 0)]
    whole = sum(base + vat for _, base, vat in rates)
    if whole <= 0:
        return tuple(RateShare(percent=p, base=0, vat=0) for p, _, _ in rates)
    exact = [Fraction(amount * (base + vat), whole) for _, base, vat in rates]
    gross = [int(x) for x in exact]  # floors (all non-negative)
    left = amount - sum(gross)
    for i in sorted(range(len(rates)), key=lambda i: exact[i] - gross[i], reverse=True)[:left]:
        gross[i] += 1
    out = []
    for (percent, base, vat), g in zip(rates, gross, strict=True):
        # round() of a Fraction rounds half to even, exactly.
        rounded = round(Fraction(vat * g, base + vat)) if base + vat else 0
        out.append(RateShare(percent=percent, base=g - rounded, vat=rounded))
    return tuple(out)


def credit(
    conn: Connection, authorization_id: str, at: datetime, compose: ComposeCredit
) -> list[int]:
    """Issue, in the caller's transaction (which holds the authorization row's lock), a credit
    note for each refund of the session that its current invoice has none for; their ids."""
    refs = invoice_refs(conn, authorization_id)
    current = next(
        (i for i in reversed(refs) if i.superseded_by is None and i.kind != CREDIT), None
    )
    if current is None:
        return []
    done = {i.refund_seq for i in refs if i.credits == current.invoice_id}
    m, a = movements, authorizations
    refunds = conn.execute(
        sa.select(m.c.seq, m.c.amount, m.c.at)
        .where(m.c.authorization_id == authorization_id, m.c.kind == "refund")
        .order_by(m.c.seq)
    ).all()
    if all(r.seq in done for r in refunds):
        return []
    row = conn.execute(
        sa.select(a.c.receipt, a.c.currency, stations.c.timezone)
        .select_from(a.outerjoin(stations, stations.c.terminal_id == a.c.terminal_id))
        .where(a.c.id == authorization_id)
    ).one()
    receipt = json.loads(row.receipt)
    invoice = json.loads(
        conn.execute(
            sa.select(invoices.c.document).where(invoices.c.id == current.invoice_id)
        ).scalar_one()
    )
    issued: list[int] = []
    before = 0
    for refund in refunds:
        after = before + int(refund.amount)
        if refund.seq not in done:
            earlier, now = shares(receipt, before), shares(receipt, after)
            rates = tuple(
                RateShare(percent=n.percent, base=e.base - n.base, vat=e.vat - n.vat)
                for e, n in zip(earlier, now, strict=True)
            )
            number = next_number(conn, current.cpo_id)
            label = invoice_label(current.cpo_id, number)
            document = compose(
                Credited(
                    invoice_label=current.label,
                    invoice=invoice,
                    currency=row.currency,
                    zone=row.timezone or "UTC",
                    refund_amount=int(refund.amount),
                    refunded_at=aware(refund.at),
                    rates=rates,
                ),
                label,
                at,
            )
            issued.append(
                int(
                    conn.execute(
                        sa.insert(invoices)
                        .values(
                            cpo_id=current.cpo_id,
                            number=number,
                            authorization_id=authorization_id,
                            kind=CREDIT,
                            buyer_name=current.buyer_name,
                            buyer_vat_id=current.buyer_vat_id,
                            issued_at=at,
                            credits=current.invoice_id,
                            refund_seq=refund.seq,
                            document=json.dumps(document, sort_keys=True, ensure_ascii=False),
                        )
                        .returning(invoices.c.id)
                    ).scalar_one()
                )
            )
        before = after
    return issued


def credit_refunds(
    engine: Engine, *, authorization_id: str, at: datetime, compose: ComposeCredit
) -> list[int]:
    """`credit` in a transaction of its own that locks the session's authorization row first
    (as issuing an invoice does), so two callers cannot both credit one refund."""
    a = authorizations
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(a.c.id).where(a.c.id == authorization_id).with_for_update()
        ).first()
        if found is None:
            return []
        return credit(conn, authorization_id, at, compose)
