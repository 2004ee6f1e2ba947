"""What the CSMS may ask of the kiosk, over the WebSocket: device-model variables, availability,
a remote stop, a reset; and the connector status it is told. Requests and answers are
validated against the OCA schemas on both sides."""

from __future__ import annotations

import time
from collections.abc import Callable

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.ocpp.messages import transaction_id
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run, settlements, transaction_events


def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _statuses(csms: ReferenceCsms) -> list[str]:
    return [r.payload["connectorStatus"] for r in csms.messages("StatusNotification")]


def _get(csms: ReferenceCsms, station: str, component: str, variable: str) -> dict[str, object]:
    answer = csms.ask(
        station,
        "GetVariables",
        {"getVariableData": [{"component": {"name": component}, "variable": {"name": variable}}]},
    )
    [result] = answer["getVariableResult"]
    assert isinstance(result, dict)
    return result


def _set(csms: ReferenceCsms, station: str, component: str, variable: str, value: str) -> str:
    answer = csms.ask(
        station,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "attributeValue": value,
                }
            ]
        },
    )
    status: str = answer["setVariableResult"][0]["attributeStatus"]
    return status


def test_get_variables_reads_the_kiosks_components(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    sim = kiosk()
    station = sim.config.station.id
    currency = _get(csms, station, "TariffCostCtrlr", "Currency")
    assert (currency["attributeStatus"], currency["attributeValue"]) == ("Accepted", "EUR")
    assert _get(csms, station, "TxCtrlr", "TxStartPoint")["attributeValue"] == "Authorized"
    assert _get(csms, station, "PaymentCtrlr", "AuthorizationAmount")["attributeValue"] == "50.00"
    assert _get(csms, station, "AuthCtrlr", "Nonsense")["attributeStatus"] == "UnknownVariable"
    assert _get(csms, station, "NoSuchCtrlr", "Enabled")["attributeStatus"] == "UnknownComponent"


def test_set_variables_changes_the_meter_value_interval_and_keeps_it(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    assert _set(csms, station, "SampledDataCtrlr", "TxUpdatedInterval", "300") == "Accepted"
    assert _set(csms, station, "TxCtrlr", "TxStartPoint", "EVConnected") == "Rejected"
    assert _set(csms, station, "SampledDataCtrlr", "TxUpdatedInterval", "0") == "Rejected"
    run(sim, "tap visa\nplug\nev charge\nwait 30m\ntap visa\nwait 1m\n")
    assert sim.ocpp_drained()
    periodic = [e for e in transaction_events(csms) if e["triggerReason"] == "MeterValuePeriodic"]
    assert len(periodic) == 5  # every 5 minutes of 30 (the first sample starts the count)
    run(sim, "restart\n")
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    interval = _get(csms, station, "SampledDataCtrlr", "TxUpdatedInterval")
    assert interval["attributeValue"] == "300"


def test_change_availability_takes_the_kiosk_out_of_service_and_back(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    answer = csms.ask(station, "ChangeAvailability", {"operationalStatus": "Inoperative"})
    assert answer["status"] == "Accepted"
    run(sim, "wait 1s\nexpect out-of-order\n")
    assert _until(lambda: _statuses(csms)[-1:] == ["Unavailable"])
    answer = csms.ask(station, "ChangeAvailability", {"operationalStatus": "Operative"})
    run(sim, "wait 1s\nexpect idle\n")
    assert _until(lambda: _statuses(csms)[-1:] == ["Available"])


def test_status_follows_a_fault_and_a_session(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    sim = kiosk()
    run(sim, "fault rcd_trip\nwait 1s\n")
    assert _until(lambda: _statuses(csms)[-1:] == ["Faulted"])
    run(sim, "clear rcd_trip\nwait 1s\nplug\nwait 1s\n")
    assert _until(lambda: _statuses(csms)[-1:] == ["Occupied"])
    # Every change, in order (QueueAllMessages): none overtaken by the next.
    assert _until(lambda: _statuses(csms) == ["Available", "Faulted", "Available", "Occupied"])


def _charging(sim: Simulation) -> str:
    run(sim, "tap visa\nplug\nev charge\nwait 5m\n")
    return transaction_id(sim.daemon.journal.sessions()[0]["session_id"])


def test_request_stop_transaction_ends_the_session_as_a_remote_stop(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    tx = _charging(sim)
    wrong = csms.ask(station, "RequestStopTransaction", {"transactionId": "not-this-one"})
    assert wrong["status"] == "Rejected"
    answer = csms.ask(station, "RequestStopTransaction", {"transactionId": tx})
    assert answer["status"] == "Accepted"
    run(sim, "wait 1s\nexpect receipt\n")
    assert sim.ocpp_drained()
    ended = transaction_events(csms, tx)[-1]
    assert ended["eventType"] == "Ended"
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert [s["status"] for s in settlements(csms)] == ["Settled"]


def test_request_start_transaction_is_refused(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    sim = kiosk()
    answer = csms.ask(
        sim.config.station.id,
        "RequestStartTransaction",
        {"idToken": {"idToken": "ABC", "type": "Central"}, "remoteStartId": 1},
    )
    assert answer["status"] == "Rejected"
    assert sim.daemon.journal.sessions() == []


def test_reset_restarts_the_kiosk_and_settles_the_running_session(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    tx = _charging(sim)
    assert sim.ocpp_drained()
    answer = csms.ask(sim.config.station.id, "Reset", {"type": "Immediate"})
    assert answer["status"] == "Accepted"
    assert _until(lambda: (sim.settle(), sim.restarts)[1] == 1)
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    assert sim.ocpp_drained()
    assert len(csms.messages("BootNotification")) == 2
    events = transaction_events(csms, tx)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1]["eventType"] == "Ended"
    assert events[-1]["triggerReason"] == "ResetCommand"
    assert events[-1]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    security = [r.payload["type"] for r in csms.messages("SecurityEventNotification")]
    assert security == ["StartupOfTheDevice", "ResetOrReboot"]  # A04


def _send_list(
    csms: ReferenceCsms, station: str, version: int, kind: str, *, token: str, status: str
) -> str:
    answer = csms.ask(
        station,
        "SendLocalList",
        {
            "versionNumber": version,
            "updateType": kind,
            "localAuthorizationList": [
                {"idToken": {"idToken": token, "type": "Local"}, "idTokenInfo": {"status": status}}
            ],
        },
    )
    result: str = answer["status"]
    return result


def test_the_csms_local_list_decides_rfid_offline(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    """D01/D02: SendLocalList feeds the kiosk's offline decision for RFID tokens: Accepted
    starts without the gateway, Blocked refuses; versions are kept and checked."""
    sim = kiosk()
    station = sim.config.station.id
    run(sim, "gateway down\ntap rfid\nwait 30s\nremove\nwait 10s\n")
    [first] = sim.daemon.journal.sessions()
    assert first["status"] == "voiding"  # no answer, not listed: nothing started
    token = first["card_token"]
    assert csms.ask(station, "GetLocalListVersion", {})["versionNumber"] == 0
    assert _send_list(csms, station, 1, "Full", token=token, status="Accepted") == "Accepted"
    assert csms.ask(station, "GetLocalListVersion", {})["versionNumber"] == 1
    run(sim, "tap rfid\nwait 30s\nexpect plug-in\nremove\nwait 3m\n")
    assert sim.daemon.journal.sessions()[1]["authorized_minor"] is not None
    assert (
        _send_list(csms, station, 1, "Differential", token=token, status="Blocked")
        == "VersionMismatch"
    )
    assert _send_list(csms, station, 2, "Differential", token=token, status="Blocked") == "Accepted"
    run(sim, "tap rfid\nwait 30s\n")
    assert sim.daemon.journal.sessions()[2]["end_reason"] == "denied_offline"


def _trigger(csms: ReferenceCsms, station: str, message: str, **fields: object) -> str:
    answer = csms.ask(station, "TriggerMessage", {"requestedMessage": message, **fields})
    status: str = answer["status"]
    return status


def test_trigger_message_sends_the_status_or_a_heartbeat_now(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id
    assert _until(lambda: len(_statuses(csms)) == 1)
    assert _trigger(csms, station, "StatusNotification") == "Accepted"
    assert _until(lambda: _statuses(csms) == ["Available", "Available"])
    beats = len(csms.messages("Heartbeat"))
    assert _trigger(csms, station, "Heartbeat") == "Accepted"
    assert _until(lambda: len(csms.messages("Heartbeat")) == beats + 1)
    assert _trigger(csms, station, "BootNotification") == "Rejected"  # F06.FR.17
    # Another EVSE or connector of this one-connector kiosk.
    assert _trigger(csms, station, "StatusNotification", evse={"id": 2}) == "Rejected"
    other = {"id": 1, "connectorId": 2}
    assert _trigger(csms, station, "StatusNotification", evse=other) == "Rejected"
    # Functions the kiosk does not have.
    for message in ("FirmwareStatusNotification", "LogStatusNotification", "SignV2GCertificate"):
        assert _trigger(csms, station, message) == "NotImplemented"
    assert _trigger(csms, station, "CustomTrigger", customTrigger="x") == "NotImplemented"


def test_trigger_message_sends_meter_values_and_a_transaction_event(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """F06: MeterValues carries the meter's register now; TransactionEvent is an Updated
    with trigger `Trigger` in the running transaction's numbering; with no transaction
    running there is none to send: Rejected."""
    sim = kiosk()
    station = sim.config.station.id
    run(sim, "wait 1s\n")
    assert _trigger(csms, station, "TransactionEvent") == "Rejected"
    assert _trigger(csms, station, "MeterValues", evse={"id": 1}) == "Accepted"
    assert _until(lambda: len(csms.messages("MeterValues")) == 1)
    [idle] = [r.payload for r in csms.messages("MeterValues")]
    assert idle["evseId"] == 1
    [value] = idle["meterValue"][0]["sampledValue"]
    assert value["context"] == "Trigger"
    assert value["value"] == sim.daemon.kiosk.register_wh
    tx = _charging(sim)
    assert sim.ocpp_drained()
    register = sim.daemon.kiosk.register_wh
    assert register is not None and register > value["value"]
    assert _trigger(csms, station, "TransactionEvent") == "Accepted"
    assert _until(lambda: transaction_events(csms, tx)[-1]["triggerReason"] == "Trigger")
    triggered = transaction_events(csms, tx)[-1]
    assert triggered["eventType"] == "Updated"
    assert triggered["transactionInfo"]["chargingState"] == "Charging"
    assert triggered["meterValue"][0]["sampledValue"][0]["value"] == register
    run(sim, "tap visa\nwait 1m\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, tx)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1]["eventType"] == "Ended"


def test_remote_start_with_the_csms_as_authority(kiosk: Kiosk, csms: ReferenceCsms) -> None:
    """F01/F02 with `authorize_id_tokens`: the CSMS starts a session for its token; the kiosk
    waits for the vehicle, reports Started with trigger RemoteStart and the remoteStartId, and
    the gateway is asked for no hold; a second start while it runs is refused."""
    sim = kiosk(authorize_id_tokens=True)
    station = sim.config.station.id
    token = {"idToken": "APP-USER-0042", "type": "Central"}
    answer = csms.ask(station, "RequestStartTransaction", {"idToken": token, "remoteStartId": 7})
    assert answer["status"] == "Accepted"
    tx = answer["transactionId"]

    def waiting_for_vehicle() -> bool:
        sim.settle()
        shown = sim.hardware.display.current
        return shown is not None and shown.name == "plug-in"

    assert _until(waiting_for_vehicle)
    again = csms.ask(station, "RequestStartTransaction", {"idToken": token, "remoteStartId": 8})
    assert again["status"] == "Rejected"
    run(sim, "plug\nev charge\nwait 10m\n")
    assert csms.ask(station, "RequestStopTransaction", {"transactionId": tx})["status"] == (
        "Accepted"
    )
    run(sim, "wait 1s\nexpect receipt\n")
    assert sim.ocpp_drained()
    events = transaction_events(csms, tx)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    started, ended = events[0], events[-1]
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 7
    assert started["idToken"] == token
    assert ended["triggerReason"] == "RemoteStop"
    assert csms.messages("Authorize") == []  # AuthorizeRemoteStart is false
    money = [r for r in sim.daemon.journal.outbox() if r["kind"] in ("authorize", "capture")]
    assert money == []
    assert settlements(csms) == []
