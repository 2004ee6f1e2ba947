"""Invoices from the receipt page: a PDF read back with pypdf (an independent parser) whose
figures equal the ledger's (every line, VAT per rate, the total = the capture); numbered
consecutively per operator, with no gap or repeat when many are issued at once; immutable (a
download again gives the same bytes); a business invoice with the company's name and VAT
number is a new invoice in the series that supersedes the simple one, which stays as it was;
a driver cannot fetch another receipt's or another driver's invoice by changing an id."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from pypdf import PdfReader

from gateway.ledger.invoice_store import MAX_BUSINESS
from gateway.ledger.receipt_view import receipt_snapshot
from terminal.money import Money
from tests.web.console_app import ConsoleApp, console_app, form_token
from tests.web.mail_sink import mail_sink
from tests.web.receipt_sessions import Session, captured, register
from tests.web.test_portal import link_card, signed_in_driver
from tests.web.test_receipt_details import BERLIN, SELLER

OTHER = ("NORD", "Nordstrom Laden AG", "Kai 3, 24103 Kiel", "DE987654321")


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def amounts(text: str) -> list[Decimal]:
    """Every amount on the document (a unit price, "0.52 EUR/kWh", is not one)."""
    return [Decimal(m) for m in re.findall(r"(-?\d+\.\d{2}) EUR(?!/)", text)]


def set_up(db_url: str) -> tuple[ConsoleApp, list[Session]]:
    app = console_app(db_url)
    app.add("alice")
    admin = app.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, cpo=OTHER)
    register(admin, station=BERLIN)
    register(admin, station={**BERLIN, "terminal_id": "KIOSK-0200", "cpo_id": "NORD"})
    sessions = [
        captured(app, 11, "KIOSK-0100"),
        captured(app, 12, "KIOSK-0100"),
        captured(app, 13, "KIOSK-0200"),
    ]
    return app, sessions


def business(app: ConsoleApp, session: Session, company: str, vat: str, csrf: bool = True) -> int:
    client = app.client()
    page = client.get(f"/receipts/{session.receipt_id}").text
    data = {"company": company, "vat_number": vat}
    if csrf:
        data["csrf"] = form_token(page)
    answer = client.post(
        f"/receipts/{session.receipt_id}/invoice?lang=en", data=data, follow_redirects=False
    )
    return answer.status_code


def test_an_invoice_pdf_has_the_ledgers_figures_and_the_sellers_details(db_url: str) -> None:
    app, [first, *_] = set_up(db_url)
    answer = app.client().get(f"/receipts/{first.receipt_id}/invoice.pdf?lang=en")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    text = pdf_text(answer.content)
    for shown in (
        "Invoice ACME-000001",
        "ACME Laden GmbH",
        "Hafenstraße 1, 20457 Hamburg",
        "VAT number: DE123456789",
        "Marktplatz Ladesäule 2",
        "Receipt number",
        first.receipt_id,
        "Date of supply 02/03/2026, 10:00 - 02/03/2026, 10:47",
        "Europe/Berlin",
    ):
        assert shown in text, (shown, text)
    row = app.built.ledger.fetch(first.aid)
    assert row is not None
    receipt = first.receipt
    # Every figure on the invoice is the ledger's: the lines incl. VAT, the total excl. VAT,
    # the VAT per rate, and the total = the capture.
    expected = (
        [Decimal(line["incl_vat"]) / 100 for line in receipt["lines"]]
        + [Decimal(receipt["total_excl_vat"]) / 100]
        + [x for v in receipt["vat"] for x in (Decimal(v["base"]) / 100, Decimal(v["vat"]) / 100)]
        + [Money(row.amount_captured, "EUR").to_decimal()]
    )
    found = amounts(text)
    assert sorted(found) == sorted(expected), (found, expected, text)
    assert found[-1] == Money(row.amount_captured, "EUR").to_decimal() == Decimal("13.10")
    assert "Total 13.10 EUR" in text


def test_invoices_are_numbered_per_operator_and_immutable(db_url: str) -> None:
    app, [first, second, elsewhere] = set_up(db_url)
    client = app.client()
    one = client.get(f"/receipts/{first.receipt_id}/invoice.pdf").content
    assert "Invoice ACME-000001" in pdf_text(one)
    assert "Invoice NORD-000001" in pdf_text(
        client.get(f"/receipts/{elsewhere.receipt_id}/invoice.pdf").content
    )
    assert "Invoice ACME-000002" in pdf_text(
        client.get(f"/receipts/{second.receipt_id}/invoice.pdf").content
    )
    # Again, in another language, after the seller changed its address: the same document.
    register(
        app.signed_in("alice"), cpo=(SELLER[0], SELLER[1], "Neue Straße 9, Hamburg", SELLER[3])
    )
    assert client.get(f"/receipts/{first.receipt_id}/invoice.pdf?lang=de").content == one
    snapshot = receipt_snapshot(app.built.engine, first.receipt_id)
    assert snapshot is not None
    [issued] = snapshot.invoices
    assert (
        client.get(f"/receipts/{first.receipt_id}/invoices/{issued.invoice_id}.pdf").content == one
    )


def test_a_business_invoice_supersedes_the_simple_one(db_url: str) -> None:
    app, [first, second, _] = set_up(db_url)
    client = app.client()
    simple = client.get(f"/receipts/{first.receipt_id}/invoice.pdf").content
    assert business(app, first, "Muster Logistik GmbH", "de 111 222 333") == 303
    assert business(app, first, "Muster Logistik GmbH", "DE111222333") == 303  # the same again
    snapshot = receipt_snapshot(app.built.engine, first.receipt_id)
    assert snapshot is not None
    old, new = snapshot.invoices
    assert (old.label, old.kind, old.superseded_by) == ("ACME-000001", "simple", new.invoice_id)
    assert (new.label, new.kind, new.superseded_by) == ("ACME-000002", "business", None)
    text = pdf_text(client.get(f"/receipts/{first.receipt_id}/invoice.pdf").content)
    for shown in (
        "Invoice ACME-000002",
        "Buyer",
        "Muster Logistik GmbH",
        "VAT number: DE111222333",
        "This invoice replaces invoice ACME-000001.",
        "Total 13.10 EUR",
    ):
        assert shown in text, (shown, text)
    # The superseded one is still there, unchanged, and the page lists both.
    assert client.get(f"/receipts/{first.receipt_id}/invoices/{old.invoice_id}.pdf").content == (
        simple
    )
    page = client.get(f"/receipts/{first.receipt_id}").text
    assert "Invoice ACME-000002" in page and "Invoice ACME-000001 (replaced)" in page
    # The next session's invoice continues the series.
    assert "Invoice ACME-000003" in pdf_text(
        client.get(f"/receipts/{second.receipt_id}/invoice.pdf").content
    )


def test_a_business_invoice_form_refuses_bad_input_and_changes_nothing(db_url: str) -> None:
    app, [first, *_] = set_up(db_url)
    assert business(app, first, "Muster GmbH", "DE111222333", csrf=False) == 403
    assert business(app, first, " ", "DE111222333") == 400
    assert business(app, first, "Muster GmbH", "111222333") == 400
    assert business(app, first, "Muster GmbH", "D") == 400
    snapshot = receipt_snapshot(app.built.engine, first.receipt_id)
    assert snapshot is not None and snapshot.invoices == ()
    client = app.client()
    page = client.get(f"/receipts/{first.receipt_id}").text
    answer = client.post(
        f"/receipts/{first.receipt_id}/invoice",
        data={"csrf": form_token(page), "company": "Muster GmbH", "vat_number": "XX"},
    )
    assert answer.status_code == 400
    assert "Enter the VAT number with its country code." in answer.text
    for n in range(MAX_BUSINESS):
        assert business(app, first, f"Muster {n} GmbH", "DE111222333") == 303
    assert business(app, first, "One Too Many GmbH", "DE111222333") == 409
    snapshot = receipt_snapshot(app.built.engine, first.receipt_id)
    assert snapshot is not None and len(snapshot.invoices) == MAX_BUSINESS


def test_an_invoice_id_of_another_receipt_is_not_found(db_url: str) -> None:
    app, [first, second, _] = set_up(db_url)
    client = app.client()
    client.get(f"/receipts/{first.receipt_id}/invoice.pdf")
    snapshot = receipt_snapshot(app.built.engine, first.receipt_id)
    assert snapshot is not None
    [mine] = snapshot.invoices
    assert (
        client.get(f"/receipts/{second.receipt_id}/invoices/{mine.invoice_id}.pdf").status_code
        == 404
    )
    assert client.get(f"/receipts/{first.receipt_id}/invoices/999.pdf").status_code == 404
    assert client.get("/receipts/NOSUCHRECEIPT123/invoice.pdf").status_code == 404


def test_invoices_issued_at_once_take_consecutive_numbers(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    admin = app.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, station=BERLIN)
    sessions = [captured(app, 100 + n, "KIOSK-0100") for n in range(12)]

    def fetch(session: Session) -> str:
        answer = app.client().get(f"/receipts/{session.receipt_id}/invoice.pdf")
        assert answer.status_code == 200, answer.text
        found = re.search(r"Invoice (ACME-\d{6})", pdf_text(answer.content))
        assert found is not None
        return found.group(1)

    # Every session asked for twice at once: one invoice each, numbers 1..12, no gap.
    with ThreadPoolExecutor(max_workers=6) as pool:
        labels = list(pool.map(fetch, sessions + sessions))
    assert labels[:12] == labels[12:]
    assert sorted(labels[:12]) == [f"ACME-{n:06d}" for n in range(1, 13)]


def test_the_history_lists_a_drivers_invoices_and_another_drivers_id_is_not_found(
    db_url: str,
) -> None:
    with mail_sink() as (sink, mailer):
        app = console_app(db_url, mailer=mailer)
        app.add("alice")
        admin = app.signed_in("alice")
        register(admin, cpo=SELLER)
        register(admin, station=BERLIN)
        mine = captured(app, 21, "KIOSK-0100", token="tok-card-of-dana-01")
        theirs = captured(app, 22, "KIOSK-0100", token="tok-card-of-erin-01")
        for session in (mine, theirs):
            assert app.client().get(f"/receipts/{session.receipt_id}/invoice.pdf").is_success
        assert business(app, mine, "Dana Consulting", "NL123456789B01") == 303
        dana = signed_in_driver(app, sink, "dana@example.org")
        erin = signed_in_driver(app, sink, "erin@example.org")
        for client, session in ((dana, mine), (erin, theirs)):
            assert link_card(client, session.receipt_id, "4242", "13.10").status_code == 303
    history = dana.get("/account").text
    assert 'data-invoice="ACME-000001"' in history and 'data-invoice="ACME-000003"' in history
    assert "ACME-000002" not in history  # Erin's
    snapshot = receipt_snapshot(app.built.engine, mine.receipt_id)
    theirs_snapshot = receipt_snapshot(app.built.engine, theirs.receipt_id)
    assert snapshot is not None and theirs_snapshot is not None
    current = snapshot.current_invoice
    assert current is not None
    session_page = dana.get(f"/account/sessions/{mine.aid}").text
    assert f'href="/account/invoices/{current.invoice_id}.pdf"' in session_page
    answer = dana.get(f"/account/invoices/{current.invoice_id}.pdf")
    assert answer.status_code == 200
    assert "Dana Consulting" in pdf_text(answer.content)
    # Erin's invoice by changing the id: the same 404 as an id that does not exist.
    [erins] = theirs_snapshot.invoices
    other = dana.get(f"/account/invoices/{erins.invoice_id}.pdf")
    missing = dana.get("/account/invoices/987654.pdf")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert (
        app.client()
        .get(f"/account/invoices/{current.invoice_id}.pdf", follow_redirects=False)
        .status_code
        == 303
    )


def test_a_name_outside_latin_1_is_set_in_an_embedded_font(db_url: str) -> None:
    app, [first, *_] = set_up(db_url)
    assert business(app, first, "Łódź Energia Sp. z o.o.", "PL 123-456-78-90") == 303
    data = app.client().get(f"/receipts/{first.receipt_id}/invoice.pdf").content
    assert b"DejaVuSans" in data  # embedded (the standard Helvetica has no "Ł")
    text = pdf_text(data)
    assert "Łódź Energia Sp. z o.o." in text and "VAT number: PL1234567890" in text
    assert "Total 13.10 EUR" in text
