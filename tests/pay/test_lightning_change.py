"""A Lightning payment's change, paid back to the driver's own wallet from the session page.

The driver pays the hold up front with a Lightning invoice (LNbits, FakeWallet), charges for
less, and the page they already have open then offers "your change": the uncharged part in
fiat and in satoshis at the payment's rate, and a field for an invoice from their wallet (a
second LNbits wallet on the same instance: an internal payment). Every wrong invoice is refused
with its own reason and moves nothing; the right one is paid once, and the ledger records the
payout (payment hash, preimage, satoshis, rate) as the change owed paid back, outside revenue.
"""

from __future__ import annotations

import hashlib
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from gateway.ledger import Ledger, migrate, open_engine, payouts
from gateway.ledger.rollup import stored_rows
from gateway.ledger.schema import movements
from gateway.ledger.schema import payouts as payouts_table
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_change import change_sats, sats_for
from gateway.server import EmbeddedGateway, Settings, check_routing
from launcher.simulate import Simulation
from terminal.errors import ConfigError
from terminal.money import Money
from tests.gateway.test_routing import replace_file, wait_for
from tests.ledger_check import assert_change_agrees, assert_ledger_agrees
from tests.pay.conftest import Run, lightning_routing, phone_session
from tests.pay.lightning_session import is_payout, prepaid
from tests.pay.lightning_wallets import DriverWallet, driver_wallet, foreign_invoice
from tests.processors.conftest import LIGHTNING_ROUTE, lightning_processors
from tests.processors.peers import RecordingProxy
from tests.processors.stack import Lnbits


def owed_sats(page: str) -> int:
    found = re.search(r'<p class="amount" id="change-owed">([0-9.]+ EUR) = (\d+) sat</p>', page)
    assert found is not None, page
    return int(found[2])


def error_of(page: str) -> str:
    found = re.search(r'<p class="error" role="alert" id="change-error">([^<]*)</p>', page)
    assert found is not None, page
    return found[1]


def nothing_moved(sim: Simulation, wallet: DriverWallet, balance: int, owed: int) -> None:
    [row] = sim.gateway.ledger.all_authorizations()
    with sim.gateway.ledger.engine.connect() as conn:
        assert payouts.owed(conn, row["id"]) == owed
        assert conn.execute(sa.select(payouts_table)).all() == []
    assert row["op"] is None
    assert wallet.balance_msat() == balance


def test_the_change_is_paid_once_to_the_drivers_invoice_after_every_wrong_one_is_refused(
    paying: Run, lnbits: Lnbits, tmp_path: Path
) -> None:
    sim = paying(phone_session("lightning"), lightning_routing(tmp_path, lnbits))
    [result] = sim.results()
    [row] = sim.gateway.ledger.all_authorizations()
    held, captured = row["amount_authorized"], row["amount_captured"]
    assert 0 < captured < held
    owed = held - captured
    # The ledger: the part not captured is owed back, recorded with the capture.
    kinds = [(m["kind"], m["amount"]) for m in sim.gateway.ledger.all_movements()]
    assert kinds == [("hold", held), ("capture", captured), ("change_owed", owed)]

    url = sim.phone.session_url or ""
    page = requests.get(url, timeout=30).text
    sats = owed_sats(page)
    assert Money(owed, "EUR").format() in page
    # The satoshis: those paid for the hold less what the capture is worth at the rate
    # recorded when the driver paid (rounded up as the invoice was).
    adapter = sim.gateway.processors.get("lightning", "op-wallet")
    assert isinstance(adapter, LightningProcessor)
    invoice = adapter.status(payment_id=row["id"], reference=row["processor_ref"])
    price = Decimal(invoice.raw["extra"]["btc_price"])
    paid_msat = int(invoice.raw["amount"])
    assert sats == change_sats(paid_msat, Money(captured, "EUR"), price) > 0
    assert 'name="invoice"' in page and "Get my change" in page

    wallet = driver_wallet(lnbits)
    balance = wallet.balance_msat()
    change = url + "/change"

    def refused(invoice: str) -> str:
        answer = requests.post(change, data={"invoice": invoice}, timeout=30)
        assert answer.status_code == 400, answer.text
        nothing_moved(sim, wallet, balance, owed)
        return error_of(answer.text)

    assert "not a Lightning invoice" in refused("hello")
    assert "not a Lightning invoice" in refused("lnbc1notreallyaninvoice")
    assert "another bitcoin network" in refused(foreign_invoice("tb", sats))
    assert f"exactly {sats} sat" in refused(wallet.invoice(sats + 1))
    assert f"exactly {sats} sat" in refused(wallet.invoice(sats - 1))
    assert "expired" in refused(wallet.invoice(sats, expiry_s=30))  # gone before it is paid
    paid_already = wallet.invoice(sats)
    payer = lnbits.wallet("someone-else", sats=1_000_000)
    lnbits.pay(payer, paid_already)
    balance = wallet.balance_msat()  # that invoice was paid to the driver's wallet
    assert "paid already" in refused(paid_already)

    # The right invoice, pasted as a wallet's URI in capitals and with a line break.
    right = wallet.invoice(sats)
    pasted = "LIGHTNING:" + right[:40].upper() + "\n" + right[40:].upper()
    answer = requests.post(change, data={"invoice": pasted}, timeout=30)
    assert answer.status_code == 200 and answer.url == url, answer.text
    assert f"Paid back: {sats} sat ({Money(owed, 'EUR').format()})" in answer.text
    assert 'name="invoice"' not in answer.text
    assert wallet.balance_msat() == balance + sats * 1000

    # Sent again (a second tap, a reload of the form): answered, never paid twice.
    again = requests.post(change, data={"invoice": right}, timeout=30)
    assert again.status_code == 200 and "Paid back" in again.text
    another = requests.post(change, data={"invoice": wallet.invoice(sats)}, timeout=30)
    assert another.status_code == 200 and "Paid back" in another.text
    assert wallet.balance_msat() == balance + sats * 1000
    assert len([p for p in wallet.received() if p["bolt11"] == right]) == 1

    # The ledger: the change paid back, with its proof; nothing owed now.
    with sim.gateway.ledger.engine.connect() as conn:
        [payout] = [dict(r._mapping) for r in conn.execute(sa.select(payouts_table))]
        assert payouts.owed(conn, row["id"]) == 0
        kinds = [r.kind for r in conn.execute(sa.select(movements.c.kind))]
    assert kinds == ["hold", "capture", "change_owed", "change_paid"]
    assert (payout["kind"], payout["amount"], payout["sats"]) == ("change", owed, sats)
    assert Decimal(payout["btc_price"]) == price
    assert hashlib.sha256(bytes.fromhex(payout["preimage"])).hexdigest() == payout["payment_hash"]
    assert payout["payment_hash"] in answer.text
    # Revenue is the capture alone: the change was never revenue (and the rollup agrees with
    # a sum from scratch, in the ledger check).
    with sim.gateway.ledger.engine.connect() as conn:
        rolled = stored_rows(conn)
    assert rolled and all(
        (gross, refunds) == (captured, 0) for (_c, gross, _v, refunds) in rolled.values()
    )
    assert_ledger_agrees(sim)
    assert result["amount_captured"] == captured


def test_a_released_prepayment_owes_all_of_it_and_a_lost_payout_is_settled_by_asking_lnbits(
    lnbits: Lnbits, payout_proxy: RecordingProxy, tmp_path: Path, db_url: str
) -> None:
    """Paid, never started (voided): every satoshi paid is owed back, and the console lists
    it. The payout's answer is lost (LNbits paid; the gateway's call timed out): the step
    stays unknown, nothing is recorded, and the reconciler settles it from LNbits's record
    under the step's key, without paying again. On both back-ends."""
    file = lightning_processors(
        tmp_path, lnbits, "released-operator", url=payout_proxy.url, timeout_s=2
    )
    gateway = EmbeddedGateway(db_url=db_url, processors_file=file)
    gateway.up()
    try:
        aid = "ln-released"
        prepaid(gateway, lnbits, aid, hold=2000, captured=0)
        row = gateway.ledger.fetch(aid)
        assert row is not None and row.status == "voided"
        adapter = gateway.processors.get("lightning", "op-wallet")
        paid = adapter.status(payment_id=aid, reference=row.processor_ref)
        url = f"{gateway.url}/pay/sessions/{aid}"
        page = requests.get(url, timeout=30).text
        sats = owed_sats(page)
        assert "20.00 EUR = " in page
        assert sats * 1000 == int(paid.raw["amount"])  # every satoshi paid comes back
        [listed] = payouts.change_owed(gateway.ledger.engine)
        assert (listed["authorization_id"], listed["owed"], listed["status"]) == (
            aid,
            2000,
            "voided",
        )

        wallet = driver_wallet(lnbits, "released-driver")
        answer = requests.post(url + "/change", data={"invoice": wallet.invoice(sats)}, timeout=60)
        assert payout_proxy.stalled.is_set()
        assert answer.status_code == 503 and "cannot be reached" in answer.text, answer.text
        assert wallet.balance_msat() == sats * 1000  # LNbits paid; the gateway does not know
        row = gateway.ledger.fetch(aid)
        assert row is not None and (row.op, row.op_state) == ("change", "unknown")
        with gateway.ledger.engine.connect() as conn:
            assert payouts.owed(conn, aid) == 2000
        assert requests.get(url, timeout=30).text.count("Paying your change") == 1

        payout_proxy.stall = None
        payout_proxy.release.set()
        report = gateway.reconciler.report()
        assert report.resolved == 1
        assert wallet.balance_msat() == sats * 1000  # not paid twice
        assert len([e for e in payout_proxy.exchanges if is_payout(e.method, e.path, e.body)]) == 1
        with gateway.ledger.engine.connect() as conn:
            assert payouts.owed(conn, aid) == 0
            [payout] = conn.execute(sa.select(payouts_table)).all()
        assert (payout.amount, payout.sats) == (2000, sats)
        assert f"Paid back: {sats} sat (20.00 EUR)" in requests.get(url, timeout=30).text
        assert payouts.change_owed(gateway.ledger.engine) == []
        assert_change_agrees(gateway.ledger.all_authorizations(), gateway.ledger.all_movements())
    finally:
        gateway.close()


def test_a_configuration_dropping_an_account_that_owes_change_is_refused(
    tmp_path: Path, db_url: str
) -> None:
    """Unclaimed change is paid back from the wallet that took the payment: a processors file
    without that account is refused, naming it, until the change is paid back."""
    engine = open_engine(db_url)
    try:
        migrate(engine)
        ledger = Ledger(engine)
        with ledger.write() as conn:
            ledger.insert(
                conn,
                id="ln-owed",
                terminal_id="KIOSK-0001",
                status="captured",
                currency="EUR",
                amount_requested=2000,
                amount_authorized=2000,
                amount_captured=1370,
                card_kind="lightning",
                card_token="",
                card_brand="Lightning",
                card_last4="",
                processor="lightning",
                merchant_account="op-wallet",
            )
            ledger.move(conn, "ln-owed", "change_owed", 630, "EUR", step_key="capture:ln-owed")
    finally:
        engine.dispose()
    dropped = tmp_path / "processors.toml"
    dropped.write_text('[[processors]]\nadapter = "simulated"\naccount = "default"\n')
    settings = Settings(db_url=db_url, insecure_dev=True, processors_file=dropped)
    with pytest.raises(
        ConfigError, match="change is owed to a payer of ln-owed at lightning/op-wallet"
    ):
        check_routing(settings)


def test_a_reload_dropping_an_account_that_owes_change_is_refused_until_it_is_paid_back(
    lnbits: Lnbits, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same check on a running gateway's reload (`RoutingReload`), against the database
    as it is then: a file without the wallet that owes a payer change is refused in the log,
    naming the authorization and the account, and the rules in force stay; a file keeping the
    wallet is taken; once the change is paid back, the file without it is taken."""
    file = lightning_processors(tmp_path, lnbits, "reload-operator")
    gateway = EmbeddedGateway(db_url=db_url, processors_file=file, reload_every_s=0.1)
    gateway.up()

    def next_lightning() -> str:
        return gateway.processors.route(
            terminal="KIOSK-0001", currency="EUR", method="lightning"
        ).account

    try:
        aid = "ln-reload"
        prepaid(gateway, lnbits, aid, hold=2000, captured=1370)
        kept = file.read_text()
        without = '[[processors]]\nadapter = "simulated"\naccount = "kiosk"\n'
        with caplog.at_level(logging.ERROR, logger="ev_gateway.jobs.routing"):
            replace_file(file, without)
            wait_for(lambda: "processors_config_refused" in caplog.text)
        assert "key=processors" in caplog.text
        assert f"change is owed to a payer of {aid} at lightning/op-wallet" in caplog.text
        assert next_lightning() == "op-wallet"

        # Kept, without its route: taken (new Lightning payments go to the default).
        replace_file(file, kept.replace(LIGHTNING_ROUTE, ""))
        wait_for(lambda: next_lightning() == "kiosk")

        url = f"{gateway.url}/pay/sessions/{aid}"
        sats = owed_sats(requests.get(url, timeout=30).text)
        wallet = driver_wallet(lnbits, "reload-driver")
        paid = requests.post(url + "/change", data={"invoice": wallet.invoice(sats)}, timeout=60)
        assert paid.status_code == 200, paid.text
        assert wallet.balance_msat() == sats * 1000
        assert payouts.change_owed(gateway.ledger.engine) == []
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ev_gateway.jobs.routing"):
            replace_file(file, without)
            wait_for(lambda: "processors_config_loaded" in caplog.text)
        assert "processors_config_refused" not in caplog.text
    finally:
        gateway.close()


def test_a_refund_to_the_drivers_invoice_whose_answer_was_lost_is_recorded_once_with_its_proof(
    lnbits: Lnbits, payout_proxy: RecordingProxy, tmp_path: Path
) -> None:
    """The operator's refund to the driver's invoice: LNbits paid it, its answer never came
    back (504, the step unknown). The reconciler asks the adapter, which finds the payout by
    the step's key before paying anything: the refund is recorded once, with its payment hash
    and preimage, and the driver is paid once."""
    file = lightning_processors(
        tmp_path, lnbits, "refund-lost-operator", url=payout_proxy.url, timeout_s=2
    )
    gateway = EmbeddedGateway(tmp_path / "g.sqlite3", processors_file=file)
    gateway.up()
    try:
        aid = "ln-refund-lost"
        prepaid(gateway, lnbits, aid, hold=2000, captured=1370)
        row = gateway.ledger.fetch(aid)
        assert row is not None
        adapter = gateway.processors.get("lightning", "op-wallet")
        paid = adapter.status(payment_id=aid, reference=row.processor_ref)
        sats = sats_for(Money(500, "EUR"), Decimal(paid.raw["extra"]["btc_price"]))
        wallet = driver_wallet(lnbits, "refund-lost-driver")
        body = {
            "amount": {"minor": 500, "currency": "EUR"},
            "reason": "stopped early",
            "destination": wallet.invoice(sats),
        }
        lost = requests.post(
            f"{gateway.url}/operator/authorizations/{aid}/refunds",
            json=body,
            headers={"Idempotency-Key": "r1", "Authorization": f"Bearer {gateway.operator_token}"},
            timeout=60,
        )
        assert lost.status_code == 504, lost.text
        assert wallet.balance_msat() == sats * 1000  # LNbits paid; the gateway does not know
        row = gateway.ledger.fetch(aid)
        assert row is not None and (row.op, row.op_state, row.amount_refunded) == (
            "refund",
            "unknown",
            0,
        )

        payout_proxy.stall = None
        payout_proxy.release.set()
        assert gateway.reconciler.work() == 1
        row = gateway.ledger.fetch(aid)
        assert row is not None and (row.op, row.amount_refunded) == (None, 500)
        assert wallet.balance_msat() == sats * 1000  # not paid twice
        assert len([e for e in payout_proxy.exchanges if is_payout(e.method, e.path, e.body)]) == 1
        with gateway.ledger.engine.connect() as conn:
            [payout] = conn.execute(sa.select(payouts_table)).all()
        assert (payout.kind, payout.amount, payout.sats) == ("refund", 500, sats)
        assert hashlib.sha256(bytes.fromhex(payout.preimage)).hexdigest() == payout.payment_hash
        refunds = [m["amount"] for m in gateway.ledger.all_movements() if m["kind"] == "refund"]
        assert refunds == [500]
    finally:
        gateway.close()
