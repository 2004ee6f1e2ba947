"""A session paid on the web (pay by phone: the driver pays on the page the kiosk's QR code
opens, the gateway holds the money and tells the kiosk to start) in the CSMS's eyes, the ad
hoc payment of OCPP 2.1 C24/C25: a transaction whose idToken is the direct payment's
reference and whose cost limit is the web hold, then NotifySettlement with what the gateway
captured (or Canceled when nothing was charged). Over the real WebSocket, OCA schemas."""

from __future__ import annotations

from decimal import Decimal

from launcher.csms import ReferenceCsms
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run, settlements, transaction_events
from tests.test_command_channel import web_hold


def test_a_web_paid_session_is_a_transaction_with_its_limit_and_its_settlement(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    run(sim, "plug\nev charge\n")
    aid = "web-0000-0017-session"
    web_hold(sim, aid, minor=2000)
    run(sim, "wait 1s\nexpect charging\nwait 30m\n")
    assert sim.gateway.commands.stop(aid) is not None  # the driver stops it on the phone
    run(sim, "wait 10s\nexpect receipt\nunplug\nwait 1m\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, aid)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    started, ended = events[0], events[-1]
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == {"idToken": aid, "type": "DirectPayment"}
    assert started["transactionInfo"]["transactionLimit"] == {"maxCost": 20}  # the web hold
    assert (ended["eventType"], ended["triggerReason"]) == ("Ended", "RemoteStop")
    [result] = sim.results()
    assert result["settlement"] == "captured" and result["amount_captured"] > 0
    [settled] = settlements(csms)
    assert (settled["status"], settled["pspRef"], settled["transactionId"]) == (
        "Settled",
        aid,
        aid,
    )
    assert Decimal(str(settled["settlementAmount"])) == Decimal(result["amount_captured"]) / 100
    assert (
        Decimal(str(ended["costDetails"]["totalCost"]["total"]["inclTax"]))
        == Decimal(result["amount_captured"]) / 100
    )


def test_a_web_paid_session_without_energy_is_canceled(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    """C20 for a web payment: nobody plugs in; the hold is released: Canceled, 0."""
    sim = kiosk()
    aid = "web-0000-0018-session"
    web_hold(sim, aid, minor=2000)
    run(sim, "wait 1s\nexpect plug-in\nwait 3m\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, aid)
    assert [e["eventType"] for e in events] == ["Started", "Ended"]
    [cancel] = settlements(csms)
    assert (cancel["status"], cancel["pspRef"], cancel["settlementAmount"]) == ("Canceled", aid, 0)


def test_an_action_that_is_not_ocpp_is_answered_not_supported(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """A name that is no OCPP 2.1 action at all is NotSupported (OCPP-J 4.2.3), at once (the
    `ocpp` package alone would leave the CSMS waiting for its timeout); nothing changes."""
    sim = kiosk()
    frame = csms.ask_unchecked(sim.config.station.id, "MakeCoffee", {})
    assert frame[0] == 4 and frame[2] == "NotSupported"
    run(sim, "wait 1s\nexpect idle\n")
    assert sim.daemon.journal.sessions() == []
