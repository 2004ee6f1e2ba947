"""The charge point operators who sell the energy (the supplier on a receipt and an invoice)
and the invoices issued for captured sessions (migration 0009).

Invoices follow the EU VAT Directive 2006/112/EC: each has a number in one consecutive series
per operator (Art. 226(2): "a sequential number ... which uniquely identifies the invoice"),
allocated from `cpos.next_invoice` in the transaction that stores the invoice, so a number is
never skipped or used twice; a stored invoice (its PDF bytes) never changes, so downloading
it again gives the same document. A correction is a new invoice that names the one it
supersedes (Art. 219: an amending document is treated as an invoice): a business invoice
(the buyer's company name and VAT number, Art. 226(4)-(5)) for a session that already has a
simple one supersedes it. A refund is credited by a credit note (Art. 219 again, and
Art. 90's reduction of the taxable amount): a document of its own in the same series, naming
the invoice it corrects, with the refunded amount negative and its VAT per rate; one per
refund and invoice (`invoices_credit_once`).
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.ledger.schema import metadata

# A charge point operator: the legal seller (name, address and VAT identification number,
# Art. 226(3)-(5)), with the next number of its invoice series.
cpos = sa.Table(
    "cpos",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # short, letters/digits/-: the series
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("address", sa.String(256), nullable=False, server_default=""),
    sa.Column("vat_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("next_invoice", sa.Integer, nullable=False, server_default="1"),
)

SIMPLE = "simple"  # the driver as a private person (a simplified invoice, Art. 226b)
BUSINESS = "business"  # with the buyer's company name and VAT number
INVOICE_KINDS = (SIMPLE, BUSINESS)
CREDIT = "credit"  # a credit note: `credits` the invoice it corrects, for one refund

invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cpo_id", sa.String(32), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("authorization_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("buyer_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("buyer_vat_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("supersedes", sa.Integer),  # the invoice (id) this one replaces
    sa.Column("superseded_by", sa.Integer),  # set once, when a later invoice replaces it
    # Everything the document prints (seller, buyer, station, times, rows), fixed when the
    # number is given; the PDF made from it is stored once (`pdf IS NULL` until then), so a
    # download always returns the same bytes.
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("pdf", sa.LargeBinary),
    sa.Column("pdf_sha256", sa.String(64)),
    # A credit note's invoice (id) and the refund movement (`movements.seq`) it credits.
    sa.Column("credits", sa.Integer),
    sa.Column("refund_seq", sa.BigInteger),
    sa.UniqueConstraint("cpo_id", "number", name="invoices_series"),
    sa.Index("invoices_credit_once", "credits", "refund_seq", unique=True),
)
