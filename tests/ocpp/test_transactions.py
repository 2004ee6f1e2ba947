"""Whole sessions reported to the reference CSMS over a real WebSocket on loopback: the CSMS
sees each transaction's events in order, exactly once, numbered from 0 with the right
`offline` flags, and settlements whose amounts are what the gateway captured. Every message
both ways is validated against the OCA schemas by the `ocpp` package on both peers."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.config import Config, OfflineConfig
from terminal.ocpp.messages import transaction_id
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run, settlements, transaction_events
from tests.test_increments import LONG_SESSION, with_increments

CARD_SESSION = """
tap visa
plug
ev charge
wait 20m
tap visa
wait 1m
"""


def _tx(sim: Simulation, csms: ReferenceCsms, n: int = 0) -> tuple[str, list[dict[str, Any]]]:
    assert sim.ocpp_drained(), "the kiosk's OCPP queue did not drain"
    session_id = sim.daemon.journal.sessions()[n]["session_id"]
    return session_id, transaction_events(csms, transaction_id(session_id))


def _assert_numbered(events: list[dict[str, Any]]) -> None:
    """Exactly once and in order: seqNo 0, 1, 2 ... with Started first and Ended last."""
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[0]["eventType"] == "Started"
    assert events[-1]["eventType"] == "Ended"
    assert all(e["eventType"] == "Updated" for e in events[1:-1])


def _captured(sim: Simulation) -> list[int]:
    return [r["amount_captured"] for r in sim.results() if r["settlement"] == "captured"]


def _major(minor: int) -> Decimal:
    return Decimal(minor) / 100


def test_card_session_is_reported_in_order_with_its_settlement(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    run(sim, CARD_SESSION)
    session_id, events = _tx(sim, csms)
    _assert_numbered(events)
    started, ended = events[0], events[-1]
    assert started["idToken"] == {"idToken": session_id, "type": "DirectPayment"}
    assert started["transactionInfo"]["transactionLimit"] == {"maxCost": 50}  # the hold (C18)
    assert not any(e.get("offline") for e in events)
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    # The signed OCMF readings: begin in an Updated, end in Ended.
    begin = [e for e in events if e["triggerReason"] == "SignedDataReceived"]
    assert len(begin) == 1
    signed = begin[0]["meterValue"][0]["sampledValue"][0]["signedMeterValue"]
    assert signed["encodingMethod"] == "OCMF" and signed["signedMeterData"].startswith("OCMF|")
    end_value = ended["meterValue"][0]["sampledValue"][0]
    assert end_value["context"] == "Transaction.End"
    assert end_value["signedMeterValue"]["signedMeterData"].startswith("OCMF|")
    # costDetails from the kiosk's tariff engine equal the capture.
    [captured] = _captured(sim)
    total = ended["costDetails"]["totalCost"]
    assert Decimal(str(total["total"]["inclTax"])) == _major(captured)
    assert ended["costDetails"]["totalUsage"]["energy"] == sim.results()[0]["energy_wh"]
    [settled] = settlements(csms)
    assert settled["status"] == "Settled"
    assert settled["pspRef"] == session_id
    assert settled["transactionId"] == transaction_id(session_id)
    assert Decimal(str(settled["settlementAmount"])) == _major(captured)
    assert settled["receiptUrl"].endswith("/" + settled["receiptId"])


def test_declined_card_opens_no_transaction(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    sim = kiosk()
    run(sim, "tap declined\nwait 10s\n")
    assert sim.ocpp_drained()
    assert transaction_events(csms) == []
    assert settlements(csms) == []


def test_rfid_session_carries_its_token_and_no_settlement(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    run(sim, CARD_SESSION.replace("visa", "rfid"))
    _, events = _tx(sim, csms)
    _assert_numbered(events)
    assert events[0]["idToken"]["type"] == "Local"
    assert settlements(csms) == []


def test_cancel_before_the_vehicle_plugs_in_releases_the_hold(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """C20: the transaction started with the hold ends at the plug-in timeout, and the hold's
    release is reported as Canceled with nothing settled."""
    sim = kiosk()
    run(sim, "tap visa\nwait 3m\n")
    session_id, events = _tx(sim, csms)
    _assert_numbered(events)
    assert [e["eventType"] for e in events] == ["Started", "Ended"]
    assert events[-1]["triggerReason"] == "EVConnectTimeout"
    assert events[-1]["costDetails"]["totalUsage"]["energy"] == 0
    [cancel] = settlements(csms)
    assert cancel["status"] == "Canceled"
    assert cancel["settlementAmount"] == 0
    assert cancel["pspRef"] == session_id


def test_cancel_after_start_without_energy_is_canceled(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    """C19/C20: plugged in, the vehicle never asks for energy, the driver taps again: no
    energy, the hold is released."""
    sim = kiosk()
    run(sim, "tap visa\nplug\nwait 30s\ntap visa\nwait 1m\n")
    _, events = _tx(sim, csms)
    _assert_numbered(events)
    [cancel] = settlements(csms)
    assert cancel["status"] == "Canceled"
    assert _captured(sim) == []


def test_cost_limit_reached_ends_the_transaction(
    kiosk: Kiosk, csms: ReferenceCsms, config: Config
) -> None:
    """C23 without increments: the session stops at the hold, trigger CostLimitReached."""
    small = replace(config, payment=replace(config.payment, hold=1000, min_authorized=500))
    sim = kiosk(small)
    run(sim, "tap visa\nplug\nev charge\nwait 4h\n")
    _, events = _tx(sim, csms)
    _assert_numbered(events)
    assert events[-1]["triggerReason"] == "CostLimitReached"
    [captured] = _captured(sim)
    assert captured <= 1000
    [settled] = settlements(csms)
    assert Decimal(str(settled["settlementAmount"])) == _major(captured)


@pytest.mark.slow
def test_increment_is_reported_as_a_new_limit(
    kiosk: Kiosk, csms: ReferenceCsms, config: Config
) -> None:
    """C23: each approved increment is an Updated with trigger LimitSet and the new maxCost;
    the settlement is the capture, above the first hold."""
    sim = kiosk(with_increments(config))
    run(sim, LONG_SESSION)
    _, events = _tx(sim, csms)
    _assert_numbered(events)
    limits = [
        e["transactionInfo"]["transactionLimit"]["maxCost"]
        for e in events
        if e["triggerReason"] == "LimitSet"
    ]
    assert limits and limits == sorted(limits) and limits[0] > 10
    [captured] = _captured(sim)
    assert captured > 1000
    assert Decimal(str(settlements(csms)[0]["settlementAmount"])) == _major(captured)


def test_restart_mid_session_ends_it_once_with_power_loss(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    run(sim, "tap visa\nplug\nev charge\nwait 10m\n")
    assert sim.ocpp_drained()
    run(sim, "restart\nwait 1m\n")
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    _, events = _tx(sim, csms)
    _assert_numbered(events)
    assert events[-1]["transactionInfo"]["stoppedReason"] == "PowerLoss"
    [captured] = _captured(sim)
    [settled] = settlements(csms)
    assert Decimal(str(settled["settlementAmount"])) == _major(captured)
    assert len(csms.messages("BootNotification")) == 2


def _shows(sim: Simulation, screen: str) -> bool:
    """Let the kiosk handle what the OCPP thread posts (in real time) until it shows `screen`."""

    def shown() -> bool:
        sim.settle()
        current = sim.hardware.display.current
        return current is not None and current.name == screen

    return _wait(shown)


def _wait(predicate: Any, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_csms_offline_for_a_day_then_back(
    kiosk: Kiosk, csms: ReferenceCsms, config: Config
) -> None:
    """Sessions while the CSMS is unreachable are queued in the journal and sent in order
    once it is back, each event once, flagged offline; what happened online is not. (The
    meter is sampled every 10 s here so a simulated day runs in a few seconds.)"""
    sim = kiosk(replace(config, session=replace(config.session, sample_interval_ms=10_000)))
    run(sim, "tap visa\nplug\nev charge\nwait 5m\n")
    assert sim.ocpp_drained()
    csms.down()
    assert sim.ocpp is not None
    assert _wait(lambda: not sim.ocpp.online())
    run(sim, "wait 2h\ntap visa\nwait 1m\nunplug\nwait 2m\n")
    run(sim, "tap mastercard\nplug\nev charge\nwait 1h\nunplug\nwait 21h\n")
    online_before = len(csms.messages())
    csms.up()
    assert sim.ocpp_drained(30)
    first_id, first = _tx(sim, csms, 0)
    second_id, second = _tx(sim, csms, 1)
    for events in (first, second):
        _assert_numbered(events)
    # The first session started online: its events until the outage are not offline.
    flags = [bool(e.get("offline")) for e in first]
    assert flags[0] is False and flags[-1] is True
    assert flags == sorted(flags)  # online, then offline: never back and forth
    assert all(e.get("offline") for e in second)
    # All of the second arrived after the CSMS came back, after the first's Ended.
    order = [r.payload for r in csms.messages("TransactionEvent")]
    assert order.index(first[-1]) < order.index(second[0])
    assert len(csms.messages()) > online_before
    amounts = sorted(Decimal(str(s["settlementAmount"])) for s in settlements(csms))
    assert amounts == sorted(_major(c) for c in _captured(sim))
    assert {s["pspRef"] for s in settlements(csms)} == {first_id, second_id}


def test_a_capture_without_answer_is_reported_failed_then_settled(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """C22: the first capture attempt gets no answer from the payment gateway: Failed, with
    the reason; the retry lands: Settled, with what the gateway captured."""
    sim = kiosk()
    run(sim, "tap visa\nplug\nev charge\nwait 10m\ngateway down\ntap visa\nwait 1m\n")
    run(sim, "gateway up\nwait 10m\n")
    session_id, events = _tx(sim, csms)
    _assert_numbered(events)
    failed, settled = settlements(csms)
    assert failed["status"] == "Failed"
    assert "no answer from the payment gateway" in failed["statusInfo"]
    assert settled["status"] == "Settled"
    [captured] = _captured(sim)
    assert Decimal(str(failed["settlementAmount"])) == _major(captured)  # what was attempted
    assert Decimal(str(settled["settlementAmount"])) == _major(captured)
    assert {failed["pspRef"], settled["pspRef"]} == {session_id}


def test_rfid_with_the_csms_as_authority(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    """`authorize_id_tokens`: an RFID token is authorized by the CSMS (Authorize), declined
    when the CSMS does not know it; a known one charges, and the CSMS bills it from the
    transaction's costDetails: the gateway is asked for no hold and no capture."""
    sim = kiosk(authorize_id_tokens=True)
    run(sim, "tap rfid\n")
    assert _shows(sim, "declined")
    run(sim, "remove\nwait 10s\n")
    assert sim.ocpp_drained()
    [asked] = [r.payload for r in csms.messages("Authorize")]
    assert asked["idToken"]["type"] == "Local"
    csms.accepted_tokens.add(asked["idToken"]["idToken"])
    run(sim, "tap rfid\n")
    assert _shows(sim, "plug-in")
    run(sim, "remove\nplug\nev charge\nwait 10m\n")
    run(sim, "tap rfid\nwait 1m\n")
    _, events = _tx(sim, csms, 1)
    _assert_numbered(events)
    assert events[0]["idToken"] == asked["idToken"]
    assert events[-1]["costDetails"]["totalCost"]["total"]["inclTax"] > 0
    assert [r.payload["idToken"] for r in csms.messages("Authorize")] == [asked["idToken"]] * 2
    money = [
        r for r in sim.daemon.journal.outbox() if r["kind"] in ("authorize", "capture", "void")
    ]
    assert money == []
    assert settlements(csms) == []


def test_a_refused_capture_is_reported_rejected_once_with_its_reason(
    kiosk: Kiosk, csms: ReferenceCsms, config: Config
) -> None:
    """C22: the card was charged offline (store and forward); when the gateway is back the
    processor declines the card, so the capture is refused for good: NotifySettlement
    Rejected with the amount asked and the reason, after the transaction's Ended, never
    retried into a Settled; the kiosk raises a capture_refused event for the operator."""
    saf = OfflineConfig(
        store_and_forward=True,
        max_session=5000,
        max_outstanding=10_000,
        max_count=5,
        max_age_ms=24 * 3_600_000,
    )
    sim = kiosk(replace(config, offline=saf))
    run(sim, "gateway down\ntap declined\nexpect plug-in\nplug\nev charge\nwait 30m\n")
    run(sim, "tap declined\nexpect receipt\nunplug\nwait 1m\ngateway up\nwait 10m\n")
    session_id, events = _tx(sim, csms)
    _assert_numbered(events)
    [result] = sim.results()
    assert result["settlement"] == "refused"
    [rejected] = settlements(csms)
    assert rejected["status"] == "Rejected"
    assert rejected["pspRef"] == session_id
    assert rejected["transactionId"] == transaction_id(session_id)
    assert rejected["statusInfo"].startswith("refused: ")
    assert Decimal(str(rejected["settlementAmount"])) == _major(result["amount_priced"]) > 0
    order = [
        r.payload for r in csms.messages() if r.action in ("TransactionEvent", "NotifySettlement")
    ]
    assert order.index(events[-1]) < order.index(rejected)
    alerts = [
        json.loads(r["body"])["event"]
        for r in sim.daemon.journal.outbox()
        if r["kind"] == "events" and r["state"] == "done"
    ]
    assert [a["detail"].split()[0] for a in alerts if a["kind"] == "capture_refused"] == [
        session_id
    ]
    run(sim, "wait 1h\n")  # no retry turns it into a Settled later
    assert sim.ocpp_drained()
    assert [s["status"] for s in settlements(csms)] == ["Rejected"]
