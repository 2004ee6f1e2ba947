"""The connector status while the CSMS is unreachable (OCPP 2.1 G01, B04), over a real
WebSocket with the OCA schemas: with `OCPPCommCtrlr.QueueAllMessages` true (the kiosk's
default) every change is queued with its own time and arrives in order once the CSMS is back,
in step with the transaction events; with it false the kiosk reports only the current status
on reconnect, and only if it changed unless it was offline longer than `OfflineThreshold`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from typing import Any

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run


def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _statuses(csms: ReferenceCsms) -> list[dict[str, Any]]:
    return [r.payload for r in csms.messages("StatusNotification")]


def _at(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["timestamp"])


def _offline(sim: Simulation, csms: ReferenceCsms) -> None:
    """Let the first status arrive, then take the CSMS away."""
    assert _until(lambda: len(_statuses(csms)) == 1)
    csms.down()
    assert sim.ocpp is not None
    assert _until(lambda: not sim.ocpp.online())


def _set(csms: ReferenceCsms, sim: Simulation, variable: str, value: str) -> None:
    answer = csms.ask(
        sim.config.station.id,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": variable},
                    "attributeValue": value,
                }
            ]
        },
    )
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"


def test_status_changes_while_offline_arrive_in_order_with_their_times(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    _offline(sim, csms)
    run(sim, "plug\nwait 1m\nfault rcd_trip\nwait 1m\nclear rcd_trip\nwait 1m\nunplug\nwait 1m\n")
    run(sim, "tap visa\nplug\nev charge\nwait 10m\ntap visa\nwait 1m\nunplug\nwait 1m\n")
    assert csms.messages("StatusNotification")[1:] == []  # nothing got through
    csms.up()
    assert sim.ocpp_drained(20)
    seen = _statuses(csms)
    assert [s["connectorStatus"] for s in seen] == [
        "Available",
        "Occupied",  # plugged in
        "Faulted",
        "Occupied",  # fault cleared, still plugged in
        "Available",  # unplugged
        "Occupied",  # the card session
        "Available",
    ]
    times = [_at(s) for s in seen[1:]]
    assert times == sorted(times)
    # Each stamped when it happened on the kiosk, not when it was sent: a minute apart.
    assert [(b - a).total_seconds() for a, b in pairwise(times[:4])] == [
        60.0,
        60.0,
        60.0,
    ]
    # In step with the transaction: occupied before it started, available after it ended,
    # and every message of the outage in the order it happened.
    after_outage = [
        r.payload
        for r in csms.messages()
        if r.action in ("StatusNotification", "TransactionEvent", "NotifySettlement")
    ][1:]
    stamps = [
        _at(p) if "timestamp" in p else datetime.fromisoformat(p["settlementTime"])
        for p in after_outage
    ]
    assert stamps == sorted(stamps)
    kinds = [p.get("connectorStatus") or p.get("eventType") or p["status"] for p in after_outage]
    assert kinds.index("Started") > kinds.index("Occupied", 4)
    assert kinds.index("Ended") < len(kinds) - 1 - kinds[::-1].index("Available")


def test_without_queue_all_messages_only_the_current_status_is_reported(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """B04.FR.02: changes while offline are not history to replay; the current status of a
    connector that changed is reported once the CSMS is back."""
    sim = kiosk()
    _set(csms, sim, "QueueAllMessages", "false")
    _offline(sim, csms)
    run(sim, "plug\nwait 10s\nfault rcd_trip\nwait 10s\nclear rcd_trip\nwait 10s\n")
    csms.up()
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    assert _until(lambda: len(_statuses(csms)) == 2)
    assert sim.ocpp_drained()
    assert [s["connectorStatus"] for s in _statuses(csms)] == ["Available", "Occupied"]


def test_offline_threshold_decides_whether_an_unchanged_status_is_reported(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    """B04.FR.01/02 with QueueAllMessages off: back within OfflineThreshold with nothing
    changed, nothing is reported; back after it, the status is reported although unchanged."""
    sim = kiosk()
    _set(csms, sim, "QueueAllMessages", "false")
    _set(csms, sim, "OfflineThreshold", "120")
    _offline(sim, csms)
    run(sim, "wait 1m\n")
    csms.up()
    assert _until(lambda: csms.connected(sim.config.station.id))
    beats = len(csms.messages("Heartbeat"))
    assert csms.ask(sim.config.station.id, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert _until(lambda: len(csms.messages("Heartbeat")) > beats)  # the link is serving
    assert len(_statuses(csms)) == 1
    csms.down()
    assert _until(lambda: not sim.ocpp.online())
    run(sim, "wait 3m\n")
    csms.up()
    assert _until(lambda: len(_statuses(csms)) == 2)
    assert [s["connectorStatus"] for s in _statuses(csms)] == ["Available", "Available"]


def test_queue_all_messages_and_offline_threshold_are_device_model_variables(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    station = sim.config.station.id

    def get(variable: str) -> Any:
        answer = csms.ask(
            station,
            "GetVariables",
            {
                "getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": variable}}
                ]
            },
        )
        return answer["getVariableResult"][0]["attributeValue"]

    assert get("QueueAllMessages") == "true"
    refused = csms.ask(
        station,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "QueueAllMessages"},
                    "attributeValue": "yes",
                }
            ]
        },
    )
    assert refused["setVariableResult"][0]["attributeStatus"] == "Rejected"
    assert get("QueueAllMessages") == "true"
    _set(csms, sim, "QueueAllMessages", "false")
    _set(csms, sim, "OfflineThreshold", "600")
    run(sim, "restart\n")
    assert sim.ocpp is not None and sim.ocpp.wait_online(10)
    assert (get("QueueAllMessages"), get("OfflineThreshold")) == ("false", "600")
