"""OCPP 2.1 A04: the kiosk's security events reach the CSMS as SecurityEventNotification,
queued in the journal like the transaction messages (a critical one is never lost offline).
The connection failures (an impostor CSMS, refused credentials) are in test_security.py."""

from __future__ import annotations

import time

from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation
from terminal.core.events import TechnicianActed
from tests.ocpp.conftest import Kiosk
from tests.ocpp.harness import run


def _types(csms: ReferenceCsms) -> list[str]:
    return [r.payload["type"] for r in csms.messages("SecurityEventNotification")]


def _technician(sim: Simulation, kind: str, detail: str) -> None:
    """What the serial console posts for a login, a failed login or a logout."""
    sim.daemon.post(TechnicianActed(kind=kind, detail=detail, **sim.daemon.stamp()))
    sim.settle()


def test_start_up_and_technician_logins_are_security_events(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    assert sim.ocpp_drained()
    assert _types(csms) == ["StartupOfTheDevice"]
    _technician(sim, "security", "login_failed tries_left=2")
    _technician(sim, "security", "lockout failures=3")
    _technician(sim, "technician", "login")
    _technician(sim, "technician", "logout reason=command")  # not a security event
    assert sim.ocpp_drained()
    assert _types(csms) == [
        "StartupOfTheDevice",
        "MaintenanceLoginFailed",
        "MaintenanceLoginFailed",
        "MaintenanceLoginAccepted",
    ]
    [failed] = [r.payload for r in csms.messages("SecurityEventNotification")][1:2]
    assert failed["techInfo"] == "login_failed tries_left=2"
    run(sim, "restart\n")
    assert sim.ocpp is not None and sim.ocpp.wait_online(10) and sim.ocpp_drained()
    assert _types(csms)[-1] == "StartupOfTheDevice"


def test_security_events_while_offline_arrive_when_the_csms_is_back(
    kiosk: Kiosk, csms: ReferenceCsms
) -> None:
    sim = kiosk()
    assert sim.ocpp_drained()
    csms.down()
    assert sim.ocpp is not None
    end = time.monotonic() + 10
    while sim.ocpp.online() and time.monotonic() < end:
        time.sleep(0.01)
    assert not sim.ocpp.online()
    _technician(sim, "security", "login_failed tries_left=2")
    run(sim, "restart\n")
    csms.up()
    assert sim.ocpp is not None and sim.ocpp.wait_online(10) and sim.ocpp_drained()
    assert _types(csms) == ["StartupOfTheDevice", "MaintenanceLoginFailed", "StartupOfTheDevice"]
