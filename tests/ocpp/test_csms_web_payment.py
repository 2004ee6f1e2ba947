"""A web payment the operator's CSMS runs (OCPP 2.1 C25, ad hoc payment through the CSMS's
own payment page): NotifyWebPaymentStarted keeps the charger for the driver paying on the
phone; the CSMS's RequestStartTransaction with a `DirectPayment` idToken starts the
transaction, or the timeout frees the charger. Between the reference CSMS and a simulated
kiosk over the real WebSocket, every message validated against the OCA schemas."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from launcher.csms import ReferenceCsms
from terminal.money import Money
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run, settlements, transaction_events


def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _money_at_gateway(sim: object) -> list[object]:
    journal = sim.daemon.journal  # type: ignore[attr-defined]
    return [r for r in journal.outbox() if r["kind"] in ("authorize", "capture", "void")]


def test_a_web_payment_keeps_the_charger_refuses_a_tap_and_starts_the_paid_transaction(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    csms.web_payment_opened(station, timeout_s=300)
    run(sim, "wait 1s\nexpect web-payment\n")
    # Someone else taps meanwhile: told the charger is kept, no session, no hold.
    run(sim, "tap visa\nwait 1s\nexpect reserved\nwait 10s\nexpect web-payment\n")
    assert sim.daemon.journal.sessions() == [] and _money_at_gateway(sim) == []
    answer = csms.web_payment_paid(station, "PAY-2026-0042")
    assert answer["status"] == "Accepted"
    tx = answer["transactionId"]

    def waiting_for_vehicle() -> bool:
        sim.settle()
        shown = sim.hardware.display.current
        return shown is not None and shown.name == "plug-in"

    assert _until(waiting_for_vehicle)
    run(sim, "plug\nev charge\nwait 20m\nunplug\nwait 1m\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, tx)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    started, ended = events[0], events[-1]
    assert started["triggerReason"] == "RemoteStart"
    assert started["idToken"] == {"idToken": "PAY-2026-0042", "type": "DirectPayment"}
    assert started["transactionInfo"]["remoteStartId"] == 1
    hold = sim.config.payment.hold / 100  # the kiosk's hold is the cost limit
    assert started["transactionInfo"]["transactionLimit"] == {"maxCost": hold}
    assert ended["eventType"] == "Ended" and ended["costDetails"]["totalCost"]["total"]
    # The CSMS's payment service holds and settles the money: nothing at the gateway.
    assert _money_at_gateway(sim) == [] and settlements(csms) == []
    # The payment was used: a second start for it is refused.
    run(sim, "wait 2m\nexpect idle\n")
    assert csms.web_payment_paid(station, "PAY-2026-0042")["status"] == "Rejected"


def test_without_the_payment_the_timeout_frees_the_charger_and_a_late_start_is_refused(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    csms.web_payment_opened(station, timeout_s=90)
    run(sim, "wait 1m\nexpect web-payment\nwait 31s\nexpect idle\n")
    refused = csms.web_payment_paid(station, "PAY-LATE-1")
    assert refused["status"] == "Rejected"
    assert refused["statusInfo"]["additionalInfo"] == "no web payment keeps the charger"
    # The charger is anyone's again: a card starts a session at the gateway.
    run(sim, "tap visa\nwait 5s\nexpect plug-in\n")
    assert [r["kind"] for r in _money_at_gateway(sim)] == ["authorize"]


def test_a_web_payment_for_another_evse_or_a_busy_kiosk_keeps_nothing(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    csms.web_payment_opened(station, evse_id=2, timeout_s=120)
    run(sim, "wait 1s\nexpect idle\n")
    run(sim, "tap visa\nwait 5s\nexpect plug-in\n")
    csms.web_payment_opened(station, timeout_s=120)
    run(sim, "wait 1s\nexpect plug-in\n")
    assert not sim.daemon.kiosk.web_payment
    assert csms.web_payment_paid(station, "PAY-BUSY-1")["status"] == "Rejected"


def test_a_restart_within_the_timeout_keeps_the_charger_for_the_rest_of_it(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """The announcement is journaled before the machine hears of it."""
    sim = kiosk()
    station = sim.config.station.id
    csms.web_payment_opened(station, timeout_s=120)
    run(sim, "wait 30s\nexpect web-payment\nrestart\nwait 1s\nexpect web-payment\n")
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    run(sim, "wait 80s\nexpect web-payment\nwait 10s\nexpect idle\n")


def test_the_amount_the_csms_payment_holds_caps_the_session(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """The CSMS answers the transaction's start with `transactionLimit.maxCost` = what its
    payment service holds (6.00 EUR, under the kiosk's hold): the kiosk lowers the cap,
    reports it (LimitSet) and stops charging at it (CostLimitReached)."""
    sim = kiosk()
    station = sim.config.station.id
    csms.web_payment_opened(station, timeout_s=300)
    run(sim, "wait 1s\nexpect web-payment\n")
    answer = csms.web_payment_paid(station, "PAY-2026-0200", held=Decimal("6.00"))
    assert answer["status"] == "Accepted"
    tx = answer["transactionId"]

    def capped() -> bool:
        sim.settle()
        session = sim.daemon.kiosk.session
        return session is not None and session.authorized == Money(600, "EUR")

    assert _until(capped)
    run(sim, "plug\nev charge\nwait 3h\nunplug\nwait 1m\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, tx)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    limits = [e for e in events if e["triggerReason"] == "LimitSet"]
    assert [e["transactionInfo"]["transactionLimit"] for e in limits] == [{"maxCost": 6}]
    ended = events[-1]
    assert (ended["eventType"], ended["triggerReason"]) == ("Ended", "CostLimitReached")
    total = Decimal(str(ended["costDetails"]["totalCost"]["total"]["inclTax"]))
    assert Decimal("5.90") < total <= Decimal("6.00")
    assert _money_at_gateway(sim) == []
