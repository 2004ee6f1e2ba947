"""Credit notes: a refund of an invoiced session gets a credit note, a document of its own in
the seller's series that names the invoice it corrects and takes back the refunded amount,
negative, with its VAT per rate. Read back with pypdf: the credit notes of refunds that add
up to the capture add up, rate by rate, to the invoice's own figures. Issued by the
operator's refund (once, however often the form is sent), by the invoice for a session
refunded before it had one, by the receipt page for a refund nothing credited yet; numbered
with the invoices, without gaps, when many are issued at once; listed and downloadable on the
receipt page and in the driver's history."""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from gateway.ledger.invoice_schema import CREDIT
from gateway.ledger.receipt_view import ReceiptSnapshot, receipt_snapshot
from tests.web.console_app import ConsoleApp, console_app, form_token
from tests.web.mail_sink import mail_sink
from tests.web.receipt_sessions import Session, captured, refund, register
from tests.web.test_invoices import OTHER, amounts, business, pdf_text, set_up
from tests.web.test_portal import link_card, signed_in_driver
from tests.web.test_receipt_details import BERLIN, SELLER


def console_refund(app: ConsoleApp, session: Session, amount: str) -> tuple[Any, dict[str, str]]:
    """An admin refunds `amount` (major units) from the console's payment page; the signed-in
    client and the form it sent."""
    client = app.signed_in("alice")
    page = client.get(f"/console/payments/{session.aid}").text
    key = re.search(r'name="key" value="([^"]+)"', page)
    assert key is not None, "no refund form"
    form = {"csrf": form_token(page), "key": key.group(1), "amount": amount, "reason": "test"}
    answer = client.post(f"/console/payments/{session.aid}/refunds", data=form)
    assert answer.status_code == 200, answer.text  # the payment page after its redirect
    return client, form


def snapshot_of(app: ConsoleApp, session: Session) -> ReceiptSnapshot:
    found = receipt_snapshot(app.built.engine, session.receipt_id)
    assert found is not None
    return found


def credit_notes(app: ConsoleApp, session: Session) -> list[Any]:
    return [i for i in snapshot_of(app, session).invoices if i.kind == CREDIT]


def pdf(app: ConsoleApp, session: Session, invoice_id: int) -> str:
    answer = app.client().get(f"/receipts/{session.receipt_id}/invoices/{invoice_id}.pdf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    return pdf_text(answer.content)


def per_rate(text: str) -> dict[str, tuple[Decimal, Decimal]]:
    """(base, VAT) per rate as the document prints them: "VAT 19% on -4.06 EUR  -0.77 EUR"."""
    found = re.findall(r"VAT (\d+)% on (-?\d+\.\d{2}) EUR\s+(-?\d+\.\d{2}) EUR", text)
    return {rate: (Decimal(base), Decimal(vat)) for rate, base, vat in found}


def test_a_partial_and_then_a_full_refund_are_credited_against_the_invoice(db_url: str) -> None:
    app, [first, *_] = set_up(db_url)
    client = app.client()
    invoice_text = pdf_text(client.get(f"/receipts/{first.receipt_id}/invoice.pdf").content)
    invoiced = per_rate(invoice_text)
    assert set(invoiced) == {"19", "7"}  # the kiosk's bill has two rates
    [invoice] = snapshot_of(app, first).invoices

    admin, form = console_refund(app, first, "5.00")
    [note] = credit_notes(app, first)
    assert (note.label, note.credits, note.superseded_by) == (
        "ACME-000002",
        invoice.invoice_id,
        None,
    )
    text = pdf(app, first, note.invoice_id)
    for shown in (
        "Credit note ACME-000002",
        "Corrects invoice ACME-000001",
        "ACME Laden GmbH",
        "VAT number: DE123456789",
        "Marktplatz Ladesäule 2",
        first.receipt_id,
        "This credit note corrects invoice ACME-000001 for a refund of 5.00 EUR.",
        "Total credited -5.00 EUR",
    ):
        assert shown in text, (shown, text)
    part = per_rate(text)
    assert set(part) == {"19", "7"}
    # Negative, the whole refund, and each rate's VAT is its rate of its base (to the cent).
    assert sum(base + vat for base, vat in part.values()) == Decimal("-5.00")
    for rate, (base, vat) in part.items():
        assert base < 0 and vat < 0
        assert abs(base * Decimal(rate) / 100 - vat) <= Decimal("0.01"), (rate, base, vat)
    figures = text.split("This credit note")[0]  # the note says the refund's amount itself
    assert amounts(figures) and all(amount < 0 for amount in amounts(figures)), text

    # The same form again (a double click): refunded once, credited once.
    again = admin.post(f"/console/payments/{first.aid}/refunds", data=form)
    assert again.status_code == 200
    assert len(credit_notes(app, first)) == 1

    console_refund(app, first, "8.10")  # the rest of the 13.10 EUR
    notes = credit_notes(app, first)
    assert [n.label for n in notes] == ["ACME-000002", "ACME-000003"]
    rest = per_rate(pdf(app, first, notes[1].invoice_id))
    # Together the credit notes take back exactly what the invoice states, rate by rate.
    for rate, (base, vat) in invoiced.items():
        assert part[rate][0] + rest[rate][0] == -base
        assert part[rate][1] + rest[rate][1] == -vat
    page = client.get(f"/receipts/{first.receipt_id}").text
    assert "Credit note ACME-000002" in page and "Credit note ACME-000003" in page
    assert f"/receipts/{first.receipt_id}/invoices/{notes[1].invoice_id}.pdf" in page
    # Issued once: the page and a download again change nothing, give the same bytes.
    one = client.get(f"/receipts/{first.receipt_id}/invoices/{notes[0].invoice_id}.pdf").content
    assert (
        client.get(f"/receipts/{first.receipt_id}/invoices/{notes[0].invoice_id}.pdf").content
        == one
    )
    assert len(credit_notes(app, first)) == 2


def test_a_session_refunded_before_its_invoice_gets_the_credit_note_with_it(
    db_url: str,
) -> None:
    app, [first, second, _] = set_up(db_url)
    console_refund(app, first, "3.10")
    assert snapshot_of(app, first).invoices == ()  # nothing to credit yet
    text = pdf_text(app.client().get(f"/receipts/{first.receipt_id}/invoice.pdf").content)
    assert "Invoice ACME-000001" in text and "Total 13.10 EUR" in text  # the supply, whole
    [invoice, note] = snapshot_of(app, first).invoices
    assert (note.kind, note.label, note.credits) == (CREDIT, "ACME-000002", invoice.invoice_id)
    assert "Total credited -3.10 EUR" in pdf(app, first, note.invoice_id)
    # A German page's invoice gets a German credit note.
    console_refund(app, second, "1.00")
    app.client().get(f"/receipts/{second.receipt_id}/invoice.pdf?lang=de")
    [_, german] = snapshot_of(app, second).invoices
    text = pdf(app, second, german.invoice_id)
    assert "Gutschrift ACME-000004" in text and "Berichtigt Rechnung ACME-000003" in text


def test_a_business_invoice_after_a_refund_is_credited_again(db_url: str) -> None:
    app, [first, *_] = set_up(db_url)
    app.client().get(f"/receipts/{first.receipt_id}/invoice.pdf")
    console_refund(app, first, "2.00")
    assert business(app, first, "Muster Logistik GmbH", "DE111222333") == 303
    simple, old_note, company, new_note = snapshot_of(app, first).invoices
    assert [i.label for i in (simple, old_note, company, new_note)] == [
        "ACME-000001",
        "ACME-000002",
        "ACME-000003",
        "ACME-000004",
    ]
    # The business invoice replaces the simple one and its credit note; the refund is
    # credited against the invoice that now stands, to the company.
    assert simple.superseded_by == old_note.superseded_by == company.invoice_id
    assert (new_note.credits, new_note.superseded_by) == (company.invoice_id, None)
    text = pdf(app, first, new_note.invoice_id)
    assert "Corrects invoice ACME-000003" in text and "Muster Logistik GmbH" in text
    assert "Total credited -2.00 EUR" in text
    page = app.client().get(f"/receipts/{first.receipt_id}").text
    assert "Credit note ACME-000002 (replaced)" in page and "Credit note ACME-000004" in page


def test_a_refund_nothing_credited_is_credited_by_the_receipt_page_once(db_url: str) -> None:
    """The refund recorded, the gateway stopped before its credit note (here: a refund by the
    money steps alone): the receipt page issues it, once."""
    app, [first, *_] = set_up(db_url)
    client = app.client()
    client.get(f"/receipts/{first.receipt_id}/invoice.pdf")
    refund(app, first, 410, "refund-without-credit-note")
    assert credit_notes(app, first) == []
    assert "Credit note ACME-000002" in client.get(f"/receipts/{first.receipt_id}").text
    client.get(f"/receipts/{first.receipt_id}")
    [note] = credit_notes(app, first)
    assert "Total credited -4.10 EUR" in pdf(app, first, note.invoice_id)


def test_credit_notes_and_invoices_issued_at_once_take_consecutive_numbers(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    admin = app.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, cpo=OTHER)
    register(admin, station=BERLIN)
    sessions = [captured(app, 40 + n, "KIOSK-0100") for n in range(8)]
    for session in sessions[:4]:  # invoiced, then refunded with no credit note yet
        app.client().get(f"/receipts/{session.receipt_id}/invoice.pdf")
        refund(app, session, 100, f"refund-{session.aid}")
    for session in sessions[4:]:  # refunded before any invoice
        refund(app, session, 200, f"refund-{session.aid}")

    def visit(job: tuple[str, Session]) -> int:
        what, session = job
        path = f"/receipts/{session.receipt_id}"
        return app.client().get(path + ("/invoice.pdf" if what == "invoice" else "")).status_code

    # Each session's page (which credits) and its invoice (which issues and credits), twice,
    # all at once.
    jobs = [(what, s) for s in sessions for what in ("page", "invoice")] * 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(visit, jobs)) == {200}
    numbers: list[int] = []
    per_refund: dict[int, int] = defaultdict(int)
    for session in sessions:
        snapshot = snapshot_of(app, session)
        kinds = sorted(i.kind for i in snapshot.invoices)
        assert kinds == [CREDIT, "simple"], kinds  # one invoice, one credit note each
        numbers += [i.number for i in snapshot.invoices]
        for note in snapshot.invoices:
            if note.kind == CREDIT:
                assert note.refund_seq is not None
                per_refund[note.refund_seq] += 1
    assert sorted(numbers) == list(range(1, 17))  # no gap, no repeat
    assert set(per_refund.values()) == {1} and len(per_refund) == 8


def test_the_drivers_history_lists_the_credit_note_to_download(db_url: str) -> None:
    with mail_sink() as (sink, mailer):
        app = console_app(db_url, mailer=mailer)
        app.add("alice")
        admin = app.signed_in("alice")
        register(admin, cpo=SELLER)
        register(admin, station=BERLIN)
        mine = captured(app, 61, "KIOSK-0100", token="tok-card-of-dana-61")
        app.client().get(f"/receipts/{mine.receipt_id}/invoice.pdf")
        console_refund(app, mine, "1.50")
        dana = signed_in_driver(app, sink, "dana@example.org")
        assert link_card(dana, mine.receipt_id, "4242", "13.10").status_code == 303
    [note] = credit_notes(app, mine)
    history = dana.get("/account").text
    assert 'data-invoice="ACME-000001"' in history
    assert f'credit note <a href="/account/invoices/{note.invoice_id}.pdf"' in history
    assert "credit note" in dana.get(f"/account/sessions/{mine.aid}").text
    answer = dana.get(f"/account/invoices/{note.invoice_id}.pdf")
    assert answer.status_code == 200
    assert "Total credited -1.50 EUR" in pdf_text(answer.content)
