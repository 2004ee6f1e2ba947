"""A Lightning payment in Debian's Chromium, at a phone and a desktop size: the console's
"money that needs a person" lists the change owed to the driver; the operator refunds part
of the capture to an invoice from the driver's wallet, typed into the refund form's
destination field and checked before anything moves (a wrong amount is refused with the
satoshis it must ask); and the driver claims the change on the session page. LNbits
(FakeWallet) is the processor's peer; the driver's wallet is a second wallet on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from gateway.ledger.operators import Operators
from gateway.processors.lightning_change import sats_for
from gateway.server import EmbeddedGateway
from gateway.web.operator_auth import hash_password
from terminal.money import Money
from tests.pay.lightning_session import prepaid
from tests.pay.lightning_wallets import driver_wallet
from tests.processors.conftest import (  # noqa: F401 - the peer
    BTC_EUR,
    lightning_processors,
    lnbits,
)
from tests.processors.stack import Lnbits
from tests.web.browser import SIZES, look
from tests.web.console_app import PASSWORD
from tests.web.live import context, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AID = "ln-console-payment"


@pytest.fixture
def lightning_gateway(tmp_path: Path, lnbits: Lnbits) -> Iterator[EmbeddedGateway]:  # noqa: F811
    file = lightning_processors(tmp_path, lnbits, "console-operator")
    gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3", processors_file=file)
    Operators(gateway.engine, gateway.ledger.clock).add(
        "alice", hash_password(PASSWORD), "admin", actor="cli"
    )
    gateway.up()
    try:
        # Paid 20.00 EUR up front with Lightning, captured 13.70: 6.30 is owed back.
        prepaid(gateway, lnbits, AID, hold=2000, captured=1370)
        yield gateway
    finally:
        gateway.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_lightning_refund_to_the_drivers_invoice_and_the_change_in_chromium(
    browser: Browser,
    lightning_gateway: EmbeddedGateway,
    lnbits: Lnbits,  # noqa: F811
    size: str,
) -> None:
    gateway = lightning_gateway
    driver = driver_wallet(lnbits, f"console-driver-{size}")
    with context(browser, size) as ctx:
        page = ctx.new_page()
        sign_in(page, gateway.url, "alice")
        page.get_by_role("link", name="Money").click()
        owed = page.locator('[data-list="change"]')
        expect(owed).to_contain_text(AID)
        expect(owed).to_contain_text("6.30 EUR")
        look(page, "console-money-change-owed", size)

        page.get_by_role("link", name=AID).click()
        expect(page.locator('[data-fact="change-owed"]')).to_have_text("6.30 EUR")
        expect(page.get_by_label("Destination")).to_be_visible()
        look(page, "console-payment-lightning", size)

        # An invoice for the wrong number of satoshis: refused, with the right number.
        sats = sats_for(Money(500, "EUR"), BTC_EUR)
        page.get_by_label("Amount in EUR").fill("5.00")
        page.get_by_label("Reason").fill("the charger stopped early")
        page.get_by_label("Destination").fill(driver.invoice(sats + 7))
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_role("alert")).to_contain_text(f"exactly {sats} sat")
        look(page, "console-payment-lightning-refused", size)
        row = gateway.ledger.fetch(AID)
        assert row is not None and row.amount_refunded == 0
        assert driver.balance_msat() == 0

        # The right one, pasted with the line break a copy may bring.
        right = driver.invoice(sats)
        page.get_by_label("Amount in EUR").fill("5.00")
        page.get_by_label("Reason").fill("the charger stopped early")
        page.get_by_label("Destination").fill(right[:50] + "\n" + right[50:])
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_role("status")).to_have_text("Refunded 5.00 EUR.")
        expect(page.locator('[data-fact="refunded"]')).to_have_text("5.00 EUR")
        expect(page.locator('[data-list="payouts"]')).to_contain_text(str(sats))
        look(page, "console-payment-lightning-refunded", size)
        assert driver.balance_msat() == sats * 1000

        # The driver's own page: the change (still owed: a refund is of the capture).
        phone = ctx.new_page()
        phone.goto(f"{gateway.url}/pay/sessions/{AID}")
        expect(phone.locator("#change-owed")).to_contain_text("6.30 EUR")
        change = int(phone.locator("#change-owed").inner_text().split("= ")[1].split(" ")[0])
        look(phone, "pay-change-owed", size)
        phone.get_by_label("Invoice from your wallet").fill(driver.invoice(change + 1))
        phone.get_by_role("button", name="Get my change").click()
        expect(phone.get_by_role("alert")).to_contain_text(f"exactly {change} sat")
        look(phone, "pay-change-refused", size)
        phone.get_by_label("Invoice from your wallet").fill(driver.invoice(change))
        phone.get_by_role("button", name="Get my change").click()
        expect(phone.locator("#change-paid")).to_contain_text(f"{change} sat")
        look(phone, "pay-change-paid", size)
        assert driver.balance_msat() == (sats + change) * 1000

        page.get_by_role("link", name="Money").click()
        expect(page.locator('[data-list="change"]')).to_contain_text("none")
