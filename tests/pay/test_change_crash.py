"""The gateway SIGKILLed while it pays a Lightning payment's change: between claiming the
step and recording it, once after LNbits paid the driver's invoice (the answer never came
back) and once before the request reached LNbits. Restarted on the same ledger, the step is
settled by asking LNbits what it paid under the step's key, never by paying blind: the driver
gets the change exactly once, and the ledger records it once."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from gateway.ledger import open_engine, payouts
from gateway.ledger.schema import payouts as payouts_table
from gateway.server import EmbeddedGateway
from terminal.protection.keys import provision_fleet
from tests.crash.processes import GatewayProcess
from tests.ledger_check import assert_rollup_agrees
from tests.pay.lightning_session import is_payout, prepaid
from tests.pay.lightning_wallets import driver_wallet
from tests.pay.test_lightning_change import owed_sats
from tests.processors.conftest import lightning_processors
from tests.processors.peers import RecordingProxy
from tests.processors.stack import Lnbits

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("reached", [True, False], ids=["paid-then-killed", "killed-unsent"])
def test_a_gateway_killed_while_paying_the_change_pays_it_exactly_once(
    lnbits: Lnbits, payout_proxy: RecordingProxy, tmp_path: Path, reached: bool
) -> None:
    payout_proxy.stall_unsent = not reached
    file = lightning_processors(tmp_path, lnbits, "crash-operator", url=payout_proxy.url)
    db = tmp_path / "gateway.sqlite3"
    # A session paid with Lightning (20.00 EUR up front) and captured for 13.70.
    aid = "ln-change-crash"
    setup = EmbeddedGateway(db, processors_file=file)
    setup.up()
    try:
        prepaid(setup, lnbits, aid, hold=2000, captured=1370)
    finally:
        setup.close()

    provision_fleet(tmp_path / "keys", fleet_id="change-crash", devices=["K1"])
    gateway = GatewayProcess(
        tmp_path,
        tmp_path / "keys" / "gateway",
        db_url=str(db),
        extra=["--processors", str(file), "--step-lock", "1"],
    )
    try:
        page_url = f"{gateway.url}/pay/sessions/{aid}"
        sats = owed_sats(requests.get(page_url, timeout=30).text)
        driver = driver_wallet(lnbits, "crash-driver")
        invoice = driver.invoice(sats)
        before = driver.balance_msat()

        # The driver asks for the change; the gateway claims the step and calls LNbits,
        # and is killed while it waits for the answer.
        def ask() -> None:
            with contextlib.suppress(requests.RequestException):  # the gateway dies under it
                requests.post(page_url + "/change", data={"invoice": invoice}, timeout=60)

        asking = threading.Thread(target=ask)
        asking.start()
        assert payout_proxy.stalled.wait(timeout=60), "the payout never left the gateway"
        gateway.kill()
        asking.join(timeout=60)
        rows = gateway.rows("authorizations")
        assert [(r["op"], r["op_state"]) for r in rows] == [("change", "calling")]
        assert gateway.rows("payouts") == []
        paid_now = driver.balance_msat() - before
        assert paid_now == (sats * 1000 if reached else 0)

        payout_proxy.stall = None  # LNbits answers from now on
        payout_proxy.release.set()
        gateway.start()
        # The driver's page, asked again with the same invoice (a retry after the error),
        # or the reconciler first: either way LNbits is asked before anything is paid.
        deadline = time.monotonic() + 90
        while True:
            again = requests.post(page_url + "/change", data={"invoice": invoice}, timeout=60)
            if "Paid back" in again.text or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert f"Paid back: {sats} sat" in again.text, again.text
        assert driver.balance_msat() == before + sats * 1000
        outgoing = [
            e
            for e in payout_proxy.exchanges
            if is_payout(e.method, e.path, e.body) and e.status < 300
        ]
        assert len(outgoing) == 1  # one payout ever reached LNbits
    finally:
        gateway.stop()
    engine = open_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert payouts.owed(conn, aid) == 0
            [payout] = conn.execute(sa.select(payouts_table)).all()
            kinds = [
                r.kind for r in conn.execute(sa.text("SELECT kind FROM movements ORDER BY seq"))
            ]
        assert (payout.kind, payout.amount, payout.sats) == ("change", 630, sats)
        assert kinds == ["hold", "capture", "change_owed", "change_paid"]
    finally:
        engine.dispose()
    assert_rollup_agrees(f"sqlite:///{db}")
