"""A credit note's content (`gateway.ledger.credit_notes` numbers and stores it; `invoice_pdf`
makes its PDF, as for an invoice): in the language of the invoice it corrects, with that
invoice's seller, buyer and supply facts as they were printed, and the refund's amounts
negative, the VAT per rate on its base."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.ledger.credit_notes import Credited
from gateway.web.languages import page_words
from terminal.money import Money

# The invoice's facts a credit note repeats: all but its own number and date of issue (date
# of supply, receipt number, station, address; `gateway.web.invoices.compose`).
REPEATED_FACTS = slice(2, None)


def compose_credit(credited: Credited, label: str, at: datetime) -> dict[str, Any]:
    """The document of credit note `label`, issued at `at` (the keys of an invoice's
    document, so one renderer makes both)."""
    invoice = credited.invoice
    language = str(invoice["language"])
    words = page_words(language, ZoneInfo(credited.zone))
    _ = words.text
    currency = credited.currency

    def money(minor: int) -> str:
        return words.number(str(Money(minor, currency)))

    rows = [[_("Excl. VAT"), money(sum(r.base for r in credited.rates))]]
    rows += [
        [
            words.number(
                _("VAT {}% on {}").format(
                    f"{Decimal(r.percent).normalize():f}", Money(r.base, currency)
                )
            ),
            money(r.vat),
        ]
        for r in credited.rates
    ]
    return {
        "language": language,
        "issued_at": at.isoformat(),
        "heading": _("Credit note {}").format(label),
        "facts": [
            [_("Credit note number"), label],
            [_("Date of issue"), words.when(at)],
            [_("Corrects invoice"), credited.invoice_label],
            [_("Date of the refund"), words.when(credited.refunded_at)],
            *invoice["facts"][REPEATED_FACTS],
        ],
        "seller_label": invoice["seller_label"],
        "seller": invoice["seller"],
        "buyer_label": invoice["buyer_label"],
        "buyer": invoice["buyer"],
        "rows": rows,
        "total": [_("Total credited"), money(credited.total)],
        "notes": [
            _("This credit note corrects invoice {} for a refund of {}.").format(
                credited.invoice_label, money(credited.refund_amount)
            ),
            *invoice["notes"][-1:],  # the time zone the times are in
        ],
    }
