"""The CSMS's requests to the kiosk, on one WebSocket connection (OCPP 2.1 CSMS -> station).

Each handler answers from the daemon's snapshot and posts events for the machine to decide
(it never changes the kiosk's state itself); the `ocpp` package validates every request and
every answer against the OCA schemas. Work a request asks for (a triggered message, a reset)
runs after the answer has been sent (`@after`), as F06 and B11 require.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v21 import ChargePoint, call_result
from websockets.asyncio.client import ClientConnection

from terminal.core.events import (
    CardPresented,
    OutOfServiceChanged,
    StopRequested,
    WebPaymentStarted,
)
from terminal.core.kiosk import AwaitingVehicle, Charging, Idle, Receipt, Suspended
from terminal.core.session import Card, CardKind
from terminal.ocpp import messages
from terminal.ocpp.certificates import CHARGING_STATION_CERTIFICATE, CertificateRefused
from terminal.ocpp.rpc import unhandled

if TYPE_CHECKING:
    from terminal.ocpp.client import OcppClient

log = logging.getLogger("ev_terminal.ocpp")

INVALID_STATION_CERTIFICATE = "InvalidChargingStationCertificate"  # A02's security event

# TriggerMessage requests the kiosk carries out (OCPP 2.1 MessageTriggerEnumType).
SIGN_CERTIFICATE = "SignChargingStationCertificate"
DIRECT_PAYMENT = "DirectPayment"  # IdTokenEnumType of a payment's reference (C18, C25)
TRIGGERABLE = frozenset(
    {"StatusNotification", "Heartbeat", "MeterValues", "TransactionEvent", SIGN_CERTIFICATE}
)


class Link(ChargePoint):  # type: ignore[misc]  # the ocpp package is untyped
    """One WebSocket connection's OCPP peer: the package's handler routing (which validates
    every incoming request and outgoing answer) with the kiosk's answers."""

    def __init__(self, station_id: str, ws: ClientConnection, client: OcppClient) -> None:
        super().__init__(station_id, ws, response_timeout=client.config.response_timeout_ms / 1000)
        self.client = client
        self._trigger: str | None = None  # accepted by on_trigger_message, for its @after
        self._reconnect = False  # a new certificate was installed: reconnect with it

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Every request is answered: one the kiosk has no handler for with a CALLERROR
        (`rpc.unhandled`), the rest by the package's routing."""
        refusal = unhandled(self, raw_msg)
        if refusal is not None:
            await self._send(refusal)
            return
        await super().route_message(raw_msg)

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", "Actual")
            status, value = self.client.model.get(
                component["name"], variable["name"], variable.get("instance"), attribute
            )
            result: dict[str, Any] = {
                "attribute_status": status,
                "component": component,
                "variable": variable,
            }
            if "attribute_type" in item:
                result["attribute_type"] = attribute
            if value is not None:
                result["attribute_value"] = value
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", "Actual")
            status = self.client.model.set(
                component["name"],
                variable["name"],
                str(item["attribute_value"]),
                variable.get("instance"),
                attribute,
            )
            log.info(
                "event=ocpp_set_variable component=%s variable=%s status=%s",
                component["name"],
                variable["name"],
                status,
            )
            results.append(
                {"attribute_status": status, "component": component, "variable": variable}
            )
        return call_result.SetVariables(set_variable_result=results)

    @on("ChangeAvailability")
    def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        """Inoperative/Operative -> the kiosk's out-of-service switch (the machine lets a
        running session finish first: Scheduled)."""
        if evse is not None and evse.get("id") not in (0, self.client.config.evse_id):
            return call_result.ChangeAvailability(status="Rejected")
        off = operational_status == "Inoperative"
        running = self.client.snapshot().session is not None
        self.client.post(OutOfServiceChanged(on=off, **self.client.stamp()))
        return call_result.ChangeAvailability(status="Scheduled" if off and running else "Accepted")

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        """Immediate: the kiosk restarts now (a running session is settled by the recovery
        at start-up, as after a power loss). OnIdle: once no session runs."""
        if evse_id is not None or self.client.on_reset is None:
            return call_result.Reset(status="Rejected")
        if type == "OnIdle" and self.client.snapshot().session is not None:
            self.client.reset_pending = True
            return call_result.Reset(status="Scheduled")
        return call_result.Reset(status="Accepted")

    @after("Reset")
    def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        if evse_id is None and not self.client.reset_pending and self.client.on_reset:
            log.info("event=ocpp_reset type=%s", type)
            self.client.queue.note_reset()  # sessions it cuts short end with ImmediateReset
            self.client.on_reset()

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        kiosk = self.client.snapshot()
        phase = kiosk.phase
        if (
            isinstance(phase, AwaitingVehicle | Charging | Suspended)
            and messages.transaction_id(phase.session.session_id) == transaction_id
        ):
            session_id = phase.session.session_id
            self.client.post(StopRequested(session_id=session_id, **self.client.stamp()))
            return call_result.RequestStopTransaction(status="Accepted")
        return call_result.RequestStopTransaction(status="Rejected")

    @on("TriggerMessage")
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        """F06: the messages the kiosk can send on request, sent after this answer (see
        `after_trigger_message`). Another EVSE or connector: Rejected. BootNotification after
        an accepted boot: Rejected (F06.FR.17). MeterValues without a meter reading yet, or
        TransactionEvent with no transaction running: Rejected, there is nothing to send.
        Messages of functions the kiosk does not have (firmware, logs, ISO 15118
        certificates, custom triggers): NotImplemented."""
        client = self.client
        self._trigger = None
        if requested_message not in TRIGGERABLE | {"BootNotification"}:
            return call_result.TriggerMessage(status="NotImplemented")
        if evse is not None and (
            evse.get("id") != client.config.evse_id
            or evse.get("connector_id", client.config.connector_id) != client.config.connector_id
        ):
            return call_result.TriggerMessage(status="Rejected")
        kiosk = client.snapshot()
        refused = (
            requested_message == "BootNotification"
            or (requested_message == SIGN_CERTIFICATE and client.certificate is None)
            or (requested_message == "MeterValues" and kiosk.register_wh is None)
            or (requested_message == "TransactionEvent" and not client.transaction_running())
        )
        if refused:
            return call_result.TriggerMessage(status="Rejected")
        self._trigger = requested_message
        return call_result.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    def after_trigger_message(self, **_: Any) -> None:
        """F06.FR.xx: the triggered message follows the TriggerMessageResponse."""
        requested, self._trigger = self._trigger, None
        if requested is not None:
            log.info("event=ocpp_triggered message=%s", requested)
            self.client.trigger(requested)

    @on("CertificateSigned")
    def on_certificate_signed(
        self, certificate_chain: str, certificate_type: str | None = None, **_: Any
    ) -> Any:
        """A02: the CSMS's CA signed the kiosk's request; install the chain and the pending
        key (`certificates.py` says what is checked). A V2G certificate, or a kiosk without
        a client certificate (profiles 1 and 2): Rejected."""
        client = self.client
        self._reconnect = False
        refusal = None
        if certificate_type not in (None, CHARGING_STATION_CERTIFICATE):
            refusal = "the kiosk has no ISO 15118 certificates"
        elif client.certificate is None:
            refusal = "the kiosk uses no client certificate (security profile 1 or 2)"
        else:
            try:
                client.certificate.install(certificate_chain, client.clock.now())
            except CertificateRefused as exc:
                refusal = str(exc)
                if client.on_security_event is not None:
                    client.on_security_event(INVALID_STATION_CERTIFICATE, refusal)
            except OSError as exc:  # the key directory is read-only here, or full
                refusal = f"cannot store the certificate: {exc.strerror}"
        if refusal is not None:
            log.warning("event=ocpp_certificate_refused reason=%s", refusal)
            return call_result.CertificateSigned(
                status="Rejected",
                status_info={"reason_code": "InvalidCertificate", "additional_info": refusal},
            )
        log.info("event=ocpp_certificate_installed")
        client.certificate_installed()
        self._reconnect = True
        return call_result.CertificateSigned(status="Accepted")

    @after("CertificateSigned")
    async def after_certificate_signed(self, **_: Any) -> None:
        """The new certificate is presented from the next connection on: close this one
        (the client reconnects at once)."""
        if self._reconnect:
            self._reconnect = False
            await self._connection.close()

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(
            version_number=self.client.queue.local_list_version()
        )

    @on("SendLocalList")
    def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        """D01/D02: the local authorization list for RFID tokens (the kiosk's keyed hashes,
        as it sends them in idToken). A differential update must carry a newer version."""
        full = update_type == "Full"
        if not full and version_number <= self.client.queue.local_list_version():
            return call_result.SendLocalList(status="VersionMismatch")
        entries: dict[str, str | None] = {}
        for entry in local_authorization_list or []:
            info = entry.get("id_token_info")
            entries[entry["id_token"]["id_token"]] = info["status"] if info else None
        self.client.queue.update_local_list(version_number, full, entries)
        log.info("event=ocpp_local_list version=%d entries=%d", version_number, len(entries))
        return call_result.SendLocalList(status="Accepted")

    @on("RequestStartTransaction")
    def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None, **_: Any
    ) -> Any:
        """F01/F02: with the CSMS as the authority (`authorize_id_tokens`), a remote start is
        a session for its idToken, as if that token had been tapped: the kiosk waits for the
        vehicle, the CSMS bills it. A bank-card kiosk without that, a busy or unavailable
        kiosk, or another EVSE: Rejected. C25: a `DirectPayment` idToken while a web payment
        the CSMS announced keeps the charger is that payment's session (see
        `_start_paid`)."""
        client = self.client
        kiosk = client.snapshot()
        if id_token.get("type") == DIRECT_PAYMENT:
            return self._start_paid(id_token, remote_start_id, evse_id)
        refusal = None
        if not client.config.authorize_id_tokens:
            refusal = "sessions start with a card at the kiosk"
        elif evse_id is not None and evse_id != client.config.evse_id:
            refusal = "no such EVSE"
        elif not kiosk.available or not isinstance(kiosk.phase, Idle | Receipt):
            refusal = "the kiosk is busy or unavailable"
        if refusal is not None:
            return call_result.RequestStartTransaction(
                status="Rejected",
                status_info={"reason_code": "NotAvailable", "additional_info": refusal},
            )
        session_id = str(uuid.uuid4())
        token = str(id_token["id_token"])
        client.queue.note_remote_start(session_id, remote_start_id, str(id_token["type"]))
        client.remote_sessions.add(session_id)
        card = Card(kind=CardKind.ID_TOKEN, token=token, brand="Remote start", last4="")
        client.post(CardPresented(card=card, session_id=session_id, **client.stamp()))
        log.info(
            "event=ocpp_remote_start session=%s remote_start_id=%d", session_id, remote_start_id
        )
        return call_result.RequestStartTransaction(
            status="Accepted", transaction_id=messages.transaction_id(session_id)
        )

    def _start_paid(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None
    ) -> Any:
        """C25: the driver has paid on the CSMS's page; its payment service holds the money
        and the idToken is the payment's reference. Started as a tap of a web card (the
        machine lets only that through while the charger is kept for the payment), with the
        kiosk's hold as the transaction's cost limit, and billed by the CSMS (nothing is held
        or captured at the gateway). Without a web payment keeping the charger (never
        announced, or its timeout passed), busy or unavailable: Rejected."""
        client = self.client
        kiosk = client.snapshot()
        refusal = None
        if evse_id is not None and evse_id != client.config.evse_id:
            refusal = "no such EVSE"
        elif not kiosk.web_payment or not kiosk.available or not isinstance(kiosk.phase, Idle):
            refusal = "no web payment keeps the charger"
        if refusal is not None:
            log.info("event=ocpp_web_payment_start_refused reason=%s", refusal)
            return call_result.RequestStartTransaction(
                status="Rejected",
                status_info={"reason_code": "NotAvailable", "additional_info": refusal},
            )
        session_id = str(uuid.uuid4())
        client.queue.web_payment_used(client.config.evse_id)
        client.queue.note_remote_start(session_id, remote_start_id, DIRECT_PAYMENT)
        client.remote_sessions.add(session_id)
        token = str(id_token["id_token"])
        card = Card(kind=CardKind.WEB, token=token, brand="Web payment", last4="")
        client.post(CardPresented(card=card, session_id=session_id, **client.stamp()))
        log.info("event=ocpp_web_payment_start session=%s", session_id)
        return call_result.RequestStartTransaction(
            status="Accepted", transaction_id=messages.transaction_id(session_id)
        )

    @on("NotifyWebPaymentStarted")
    def on_notify_web_payment_started(self, evse_id: int, timeout: int, **_: Any) -> Any:
        """C25: a driver began paying on the CSMS's web page for `evse_id`; keep the charger
        for `timeout` seconds (journaled first, so a restart within it keeps it too). The
        answer has no status: for another EVSE, a busy or unavailable kiosk, nothing is kept
        and the CSMS's start is refused later."""
        client = self.client
        kiosk = client.snapshot()
        keep = (
            evse_id == client.config.evse_id
            and timeout > 0
            and kiosk.available
            and isinstance(kiosk.phase, Idle | Receipt)
        )
        log.info("event=ocpp_web_payment evse=%d timeout_s=%d kept=%s", evse_id, timeout, keep)
        if keep:
            stamp = client.stamp()
            until = stamp["at"] + timedelta(seconds=timeout)
            client.queue.note_web_payment(evse_id, stamp["at"], until)
            client.post(WebPaymentStarted(timeout_ms=timeout * 1000, **stamp))
        return call_result.NotifyWebPaymentStarted()
