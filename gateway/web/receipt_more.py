"""What the receipt page shows beyond the kiosk's rows: the station and its seller from the
registry, the session's start and end in the station's time zone with its duration, the
refunds, the signed meter readings with their download for the transparency software, and the
session's invoices. Built from one snapshot (`gateway.ledger.receipt_view`), every value in
the page's words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from gateway.ledger.invoice_schema import CREDIT
from gateway.ledger.receipt_view import InvoiceRef, ReceiptSnapshot
from terminal import ocmf
from terminal.core.screens import hms
from terminal.core.words import N_, Words
from terminal.money import Money

READING_LABELS = {
    "begin": N_("Meter reading at the start"),
    "charging": N_("Meter reading while charging"),
    "end": N_("Meter reading at the end"),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled value; an `amount` (money, energy) is never broken across lines."""

    label: str
    value: str
    amount: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    label: str
    when: str
    value: str  # the register, kWh
    ocmf: str  # the signed reading as the meter's signer wrote it


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceLink:
    text: str
    href: str
    current: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptMore:
    station: str
    address: str
    seller: tuple[str, ...]  # name, address, VAT number; empty when the registry has none
    times: tuple[Row, ...]  # started, ended, time zone, duration
    refunds: tuple[Row, ...]  # each refund, then what was paid after them
    readings: tuple[Reading, ...]
    public_key: str
    readings_href: str
    invoices: tuple[InvoiceLink, ...]
    invoice_href: str  # the current invoice (issued on first download); "" when none can be
    business_action: str


def _invoice_text(invoice: InvoiceRef, words: Words) -> str:
    _ = words.text
    live = invoice.superseded_by is None
    if invoice.kind == CREDIT:
        text = _("Credit note {}") if live else _("Credit note {} (replaced)")
    else:
        text = _("Invoice {}") if live else _("Invoice {} (replaced)")
    return text.format(invoice.label)


def receipt_more(
    snapshot: ReceiptSnapshot, words: Words, *, path: str, language: str
) -> ReceiptMore:
    _ = words.text
    receipt, station = snapshot.receipt, snapshot.station
    currency = snapshot.currency
    started = datetime.fromisoformat(receipt["started_at"])
    ended = datetime.fromisoformat(receipt["ended_at"])
    seconds = int((ended - started).total_seconds())
    # The receipt's own row has the refunds' sum; each one is listed when there are several.
    refunds = tuple(
        Row(
            _("Refunded on {}").format(words.when(r.at)),
            words.number(str(Money(r.amount, currency))),
        )
        for r in snapshot.refunds
        if len(snapshot.refunds) > 1
    )
    if snapshot.refunded:
        paid = Money(snapshot.captured - snapshot.refunded, currency)
        refunds += (Row(_("Paid after refunds"), words.number(str(paid))),)
    seller = station.cpo
    lang = urlencode({"lang": language})
    invoices = tuple(
        InvoiceLink(
            text=_invoice_text(i, words),
            href=f"{path}/invoices/{i.invoice_id}.pdf",
            current=i.superseded_by is None and i.kind != CREDIT,
        )
        for i in reversed(snapshot.invoices)
    )
    can_invoice = seller is not None and bool(seller.vat_id)
    return ReceiptMore(
        station=station.name or receipt["station"],
        address=station.address,
        seller=()
        if seller is None
        else (seller.name, seller.address, _("VAT number: {}").format(seller.vat_id)),
        times=(
            Row(_("Started"), words.when(started)),
            Row(_("Ended"), words.when(ended)),
            Row(_("Time zone"), station.timezone, amount=False),
            Row(_("Duration"), hms(seconds)),
        ),
        refunds=refunds,
        readings=tuple(_reading(kind, text, words) for kind, text in snapshot.readings),
        public_key=station.ocmf_public_key,
        readings_href=f"{path}/readings.xml",
        invoices=invoices,
        invoice_href=f"{path}/invoice.pdf?{lang}" if can_invoice else "",
        business_action=f"{path}/invoice?{lang}" if can_invoice else "",
    )


def _reading(kind: str, text: str, words: Words) -> Reading:
    """A reading for the page: what it is, when and the register value, read from its OCMF
    payload (RD[0].TM, RD[0].RV); the page shows what it says, the software checks it."""
    _ = words.text
    when, value = "", ""
    try:
        first = ocmf.parse(text).payload["RD"][0]
        value = words.number(f"{Decimal(str(first['RV'])):.3f} {first.get('RU', 'kWh')}")
        stamp = str(first["TM"]).split(" ")[0].replace(",", ".")
        when = words.when(datetime.fromisoformat(stamp))
    except (ocmf.OcmfError, KeyError, IndexError, TypeError, ValueError, ArithmeticError):
        pass  # shown as it came: the transparency software says what is wrong with it
    return Reading(label=_(READING_LABELS.get(kind, kind)), when=when, value=value, ocmf=text)
