"""Pay by phone with Lightning, on the simulator, against LNbits (FakeWallet): the operator's
routing sends `lightning` to an LNbits wallet, so the page offers it beside the test card;
the phone asks for an invoice (a QR code and a `lightning:` link, no script), the driver's
wallet pays it, the page's refresh finds it paid and the kiosk starts with the hold as its
cost limit; stopped from the phone, the capture is the priced energy. Paid by LNbits's
webhook with no page open, the kiosk starts too. An invoice left unpaid keeps the code from a
second payment and charges nothing; one paid after the code expired never starts the kiosk."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from gateway.commands import PENDING
from gateway.ledger.schema import webhook_events
from gateway.pay.codes import Offer, PayCodes
from gateway.processors.port import PaymentState
from gateway.server import EmbeddedGateway
from launcher.simulate import Simulation
from terminal.config import Config
from terminal.money import Money
from tests.ledger_check import assert_ledger_agrees
from tests.pay.conftest import Run, lightning_routing, phone_session, qr
from tests.ports import free_port
from tests.processors.stack import Lnbits


def bolt11(page: str) -> str:
    found = re.search(r'<code id="bolt11">([a-z0-9]+)</code>', page)
    assert found is not None, page
    return found[1]


def settled_page(url: str) -> str:
    """The session page once no other request is asking LNbits at that moment (the page
    says "Checking your payment..." and refreshes itself meanwhile)."""
    for _ in range(50):
        page = requests.get(url, timeout=30).text
        if 'data-paying="1"' not in page:
            return page
        time.sleep(0.2)
    raise AssertionError(f"{url} kept checking")


def test_paid_with_lightning_charged_stopped_from_the_phone_and_captured(
    paying: Run, lnbits: Lnbits, tmp_path: Path
) -> None:
    sim = paying(phone_session("lightning"), lightning_routing(tmp_path, lnbits))
    # The page offered exactly what is routed: the simulated test card and Lightning.
    offer = sim.phone.pages[0]
    assert 'id="way-test-card"' in offer and 'id="way-lightning"' in offer
    assert 'id="way-stripe"' not in offer
    # The invoice page: the sats, a QR code and the wallet link, refreshing by itself.
    invoice = sim.phone.pages[1]
    invoice_id = bolt11(invoice)
    assert invoice_id.startswith("lnbc")
    assert f'href="lightning:{invoice_id}"' in invoice
    assert "<svg" in invoice and 'http-equiv="refresh"' in invoice
    assert "50.00 EUR" in invoice and " sat</p>" in invoice

    [result] = sim.results()
    assert result["ended"] == "remote"
    assert result["settlement"] == "captured"
    assert result["amount_captured"] == result["amount_priced"] > 0
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["card_kind"], row["processor"], row["status"]) == (
        "lightning",
        "lightning",
        "captured",
    )
    assert row["amount_authorized"] == sim.config.payment.hold
    assert row["amount_captured"] == result["amount_captured"]
    # LNbits's books: the invoice paid in full for the hold, the capture recorded on it (the
    # rest is owed back).
    at_lnbits = sim.gateway.processors.get("lightning", "op-wallet").status(
        payment_id=row["id"], reference=row["processor_ref"]
    )
    assert at_lnbits.state is PaymentState.CAPTURED
    assert at_lnbits.captured == Money(result["amount_captured"], "EUR")
    # The phone's page: the amount charged and the receipt's link.
    page = requests.get(sim.phone.session_url or "", timeout=10)
    assert f"{result['amount_captured'] / 100:.2f} EUR" in page.text
    assert f"/receipts/{row['receipt_id']}" in page.text
    assert_ledger_agrees(sim)


def test_an_unpaid_invoice_keeps_the_code_from_a_second_payment_and_charges_nothing(
    paying: Run, lnbits: Lnbits, tmp_path: Path
) -> None:
    sim = paying("expect idle", lightning_routing(tmp_path, lnbits))
    url = qr(sim)
    asked = requests.post(url, data={"method": "lightning"}, timeout=30)
    assert "/pay/sessions/" in asked.url
    first = bolt11(asked.text)
    again = requests.get(asked.url, timeout=30)
    assert bolt11(again.text) == first  # the same invoice, asked again
    second = requests.post(url, data={"method": "web_card", "test_card": "4242"}, timeout=30)
    assert "This code cannot be used" in second.text
    [row] = sim.gateway.ledger.all_authorizations()
    assert row["status"] == "pending"
    sim.run_lines("wait 1s\nexpect idle")  # the kiosk was never asked to start
    assert sim.results() == []


def test_a_way_the_routing_does_not_offer_is_not_shown_refused_and_nothing_is_held(
    simulate: Callable[..., Simulation], phone_config: Config
) -> None:
    """No processor file: the simulated processor takes everything, and it has no Lightning:
    the page offers the test card only, and a Lightning payment posted anyway is refused."""
    sim = simulate("expect idle", phone_config)
    url = qr(sim)
    page = requests.get(url, timeout=10).text
    assert 'id="way-test-card"' in page
    assert 'id="way-lightning"' not in page and 'id="way-stripe"' not in page
    refused = requests.post(url, data={"method": "lightning"}, timeout=30)
    assert refused.status_code == 400
    assert sim.gateway.ledger.all_authorizations() == []


def test_an_invoice_paid_after_the_code_expired_never_starts_the_kiosk(
    paying: Run, lnbits: Lnbits, tmp_path: Path
) -> None:
    routing = lightning_routing(tmp_path, lnbits)
    sim = paying("expect idle", routing)
    asked = requests.post(qr(sim), data={"method": "lightning"}, timeout=30)
    later = sim.gateway.ledger.clock() + timedelta(minutes=16)
    sim.gateway.ledger.clock = lambda: later
    assert routing.pay is not None
    routing.pay(bolt11(asked.text))
    assert "Paid too late" in settled_page(asked.url)
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["status"], row["void_reason"]) == ("voided", "paid_after_code_expired")
    assert sim.gateway.commands.state_of(row["id"]) is None  # no start was ever sent
    sim.run_lines("wait 1s\nexpect idle")
    assert_ledger_agrees(sim)


def test_lnbits_webhook_completes_the_payment_with_no_page_open(
    lnbits: Lnbits, tmp_path: Path
) -> None:
    port = free_port()
    routing = lightning_routing(
        tmp_path, lnbits, webhook_url=f"http://127.0.0.1:{port}/webhooks/lightning/op-wallet"
    )
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", port=port, processors_file=routing.file)
    gw.up()
    try:
        offer = Offer(
            station="Depot 1", hold_minor=2000, currency="EUR", price={"en": []}, language="en"
        )
        code = PayCodes(gw.ledger).for_terminal("KIOSK-0001", offer).code
        asked = requests.post(f"{gw.url}/pay/{code}", data={"method": "lightning"}, timeout=30)
        aid = asked.url.rsplit("/", 1)[1]
        assert routing.pay is not None
        routing.pay(bolt11(asked.text))
        deadline = time.monotonic() + 60  # LNbits calls back, then a WaitingPayments round
        while gw.commands.state_of(aid) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gw.commands.state_of(aid) == PENDING  # the kiosk is asked to start
        with gw.ledger.engine.connect() as conn:
            events = conn.execute(sa.select(webhook_events.c.processor)).scalars().all()
        assert "lightning" in events  # LNbits called the gateway's webhook
        row = gw.ledger.fetch(aid)
        assert row is not None and (row.status, row.amount_authorized) == ("approved", 2000)
    finally:
        gw.close()
