"""The receipt page and its invoices in Debian's Chromium at a phone and a desktop size: an
admin registers the seller and the station in the console, the driver opens the receipt (the
kiosk's QR target), downloads the signed readings (read back with pyocmf, signatures checked
against the registered key) and the invoice (read back with pypdf: the capture's total), then
asks for a business invoice, which supersedes the first; the admin refunds part in the console
and the driver downloads the credit note (read back with pypdf: it corrects the business
invoice, minus the refund). Every page screenshotted, inside the viewport's width, and
without a serious or critical axe-core violation."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, expect
from pyocmf import OcmfContainer
from pypdf import PdfReader

from tests.web.browser import SIZES, look
from tests.web.console_app import Clock
from tests.web.live import context, live_gateway, sign_in
from tests.web.receipt_sessions import capture_session, key_hex, signed_readings, signer

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("size", SIZES)
def test_a_driver_reads_the_receipt_downloads_readings_and_invoices_in_chromium(
    browser: Browser, tmp_path: Path, size: str
) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    keys = tmp_path / "keys"
    sign = signer(keys, "KIOSK-0300")
    with live_gateway(tmp_path, clock) as gateway, context(browser, size) as ctx:
        page = ctx.new_page()
        sign_in(page, gateway.url, "alice")
        page.goto(f"{gateway.url}/console/stations")
        page.get_by_label("Id (its invoice series)").fill("ACME")
        page.get_by_label("Name").first.fill("ACME Laden GmbH")
        page.get_by_label("Address").first.fill("Hafenstraße 1, 20457 Hamburg")
        page.get_by_label("VAT number").fill("DE123456789")
        page.get_by_role("button", name="Save the operator").click()
        expect(page.locator('tr[data-cpo="ACME"]')).to_have_count(1)
        form = page.locator("#station-form").locator("xpath=..")
        form.get_by_label("Terminal id").fill("KIOSK-0300")
        form.get_by_label("Name").fill("Marktplatz Ladesäule 2")
        form.get_by_label("Site").fill("Musterstadt")
        form.get_by_label("Address").fill("Marktplatz 12, 12345 Musterstadt")
        form.get_by_label("Time zone (IANA, e.g. Europe/Berlin)").fill("Europe/Berlin")
        form.get_by_label("Operator").select_option("ACME")
        form.get_by_label("Reading key").fill(key_hex(keys))
        page.get_by_role("button", name="Save the station").click()
        expect(page.locator('tr[data-terminal="KIOSK-0300"]')).to_contain_text("Europe/Berlin")
        look(page, "console-stations", size)

        session = capture_session(gateway.payments, clock, 1, "KIOSK-0300")
        _texts, body = signed_readings(session, sign)
        sent = requests.post(
            f"{gateway.url}/v1/meter-readings",
            json=body,
            headers={"Idempotency-Key": f"readings-{session.aid}"},
            timeout=10,
        )
        assert sent.status_code == 200, sent.text

        driver = ctx.new_page()
        driver.goto(f"{gateway.url}/receipts/{session.receipt_id}")
        expect(driver.locator("#station")).to_have_text("Marktplatz Ladesäule 2")
        expect(driver.locator("#seller")).to_contain_text("VAT number: DE123456789")
        expect(driver.locator("#times")).to_contain_text("Europe/Berlin")
        expect(driver.locator("#total-value")).to_have_text(session.total.format())
        look(driver, "receipt", size)

        with driver.expect_download() as readings:
            driver.locator("#readings-download").click()
        saved = tmp_path / "readings.xml"
        readings.value.save_as(saved)
        container = OcmfContainer.from_xml(saved)
        assert len(container) == 2
        assert all(r.verify_signature() for r in container)

        with driver.expect_download() as invoice:
            driver.locator("#invoice-download").click()
        pdf = Path(invoice.value.path()).read_bytes()
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
        assert "Invoice ACME-000001" in text
        assert f"Total {session.total.format()}" in text

        driver.reload()
        driver.get_by_label("Company name").fill("Muster Logistik GmbH")
        driver.get_by_label("VAT number").fill("DE 111 222 333")
        driver.get_by_role("button", name="Issue the invoice").click()
        expect(driver.locator("ul.invoices li")).to_have_count(2)
        expect(driver.locator("ul.invoices li.current")).to_have_text("Invoice ACME-000002")
        look(driver, "receipt-business-invoice", size)
        with driver.expect_download() as business:
            driver.locator("#invoice-download").click()
        text = "\n".join(
            p.extract_text()
            for p in PdfReader(io.BytesIO(Path(business.value.path()).read_bytes())).pages
        )
        assert "Muster Logistik GmbH" in text and "replaces invoice ACME-000001" in text

        # The admin refunds part of it in the console; the receipt lists the credit note,
        # which corrects the business invoice and takes the refund back, negative.
        page.goto(f"{gateway.url}/console/payments/{session.aid}")
        page.get_by_label("Amount in EUR").fill("2.00")
        page.get_by_label("Reason").fill("charger stopped early")
        page.get_by_role("button", name="Refund").click()
        expect(page.locator("main")).to_contain_text("Refunded 2.00 EUR.")
        look(page, "console-payment-refunded", size)
        driver.reload()
        expect(driver.locator("ul.invoices li")).to_have_count(3)
        expect(driver.locator("ul.invoices li.current")).to_have_text("Invoice ACME-000002")
        look(driver, "receipt-credit-note", size)
        with driver.expect_download() as note:
            driver.get_by_role("link", name="Credit note ACME-000003").click()
        text = "\n".join(
            p.extract_text()
            for p in PdfReader(io.BytesIO(Path(note.value.path()).read_bytes())).pages
        )
        assert "Credit note ACME-000003" in text and "Corrects invoice ACME-000002" in text
        assert "Muster Logistik GmbH" in text and "Total credited -2.00 EUR" in text
