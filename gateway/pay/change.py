"""The change of a Lightning payment on the driver's session page ("get your change").

A Lightning payment is the hold paid up front; what the session did not cost is owed back
(`gateway.ledger.payouts`). Once the session has ended, the page the driver already has open
(`/pay/sessions/{id}`) shows the change in fiat and in satoshis at the payment's rate, and a
form for an invoice from the driver's own wallet for exactly that many satoshis (pasted, or
scanned into the field by the phone's keyboard). `POST /pay/sessions/{id}/change` pays it
through `Payments.pay_change`: a refused invoice gets the page again with why, in the
driver's language, and nothing moves; once paid, the page shows the satoshis and the payment
hash (the driver's wallet holds the preimage as its receipt).

LNURL-withdraw (LUD-03) would let a wallet claim the change by scanning a QR instead; LNbits
offers it only through its `withdraw` extension, installed from its online catalogue, so the
invoice form is what is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ledger import payouts
from gateway.ledger.schema import CAPTURED, VOIDED
from gateway.payments import Payments
from gateway.processors.methods import LIGHTNING
from gateway.processors.port import ChangeRefused, PaysChange, ProcessorUnreachable
from gateway.processors.registry import UnknownProcessor
from terminal.money import Money

# The adapter's reasons (`port.ChangeRefused`) and the step's refusal, as the page words them.
REASONS = {
    "not_an_invoice": "change_not_an_invoice",
    "wrong_network": "change_wrong_network",
    "expired": "change_expired",
    "wrong_amount": "change_wrong_amount",
    "already_paid": "change_already_paid",
    "nothing_owed": "change_nothing_owed",
    "change_refused": "change_refused",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """The page's change section: owed (with its satoshis, None when the wallet service
    cannot be asked now), being paid, or paid (with the proof)."""

    owed: str = ""
    sats: int | None = None
    paying: bool = False
    paid_sats: int = 0
    paid_amount: str = ""
    payment_hash: str = ""


def change_of(payments: Payments, row: Any) -> Change | None:
    """The change section for the authorization `row`, None when it has none."""
    if row.card_kind != LIGHTNING or row.status not in (CAPTURED, VOIDED):
        return None
    with payments.ledger.engine.connect() as conn:
        owed = payouts.owed(conn, row.id)
        paid = payouts.latest(conn, row.id, "change")
    if row.op == "change":
        return Change(owed=Money(owed, row.currency).format(), paying=True)
    if owed > 0:
        try:
            processor = payments.processors.get(row.processor, row.merchant_account)
        except UnknownProcessor:  # its account left the configuration: asked later
            return Change(owed=Money(owed, row.currency).format())
        sats = None
        if isinstance(processor, PaysChange):
            try:
                sats = processor.change_sats(
                    reference=row.processor_ref, owed=Money(owed, row.currency)
                )
            except (ChangeRefused, ProcessorUnreachable):
                sats = None
        return Change(owed=Money(owed, row.currency).format(), sats=sats)
    if paid is not None:
        return Change(
            paid_sats=int(paid["sats"]),
            paid_amount=Money(int(paid["amount"]), paid["currency"]).format(),
            payment_hash=str(paid["payment_hash"]),
        )
    return None
