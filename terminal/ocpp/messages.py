"""OCPP 2.1 request payloads built from the kiosk's own values (pure: no I/O, no clock).

Every payload is the wire form (camelCase keys), checked against the OCA JSON schemas by the
`ocpp` package when it is sent. Names of enum values are the schemas' (OCPP 2.1 Part 2,
"Datatypes"), including their spelling ("IdleTIme").

Amounts: OCPP carries money as JSON numbers in major units. The kiosk keeps integer minor
units and `Decimal`; `wire_amount` turns one into a JSON number only here, at the wire. An
amount of at most 15 significant digits is written by Python's `json` as exactly its decimal
digits (shortest repr), and a reader that parses it back with `Decimal(str(x))` gets it exactly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from terminal.core.billing import Bill
from terminal.core.kiosk import Booting, Kiosk
from terminal.core.session import CardKind, Session, Status
from terminal.money import Money, minor_exponent

Payload = dict[str, Any]

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

# A session's status -> OCPP ChargingStateEnumType (None: no change reported).
CHARGING_STATE: dict[Status, str | None] = {
    Status.AUTHORIZING: None,
    Status.AUTHORIZED: "EVConnected",
    Status.CHARGING: "Charging",
    Status.SUSPENDED: "SuspendedEV",
    Status.FINISHING: None,
    Status.CAPTURING: None,
    Status.VOIDING: None,
    Status.DECLINED: None,
}

# The session's end reason -> (TransactionEvent triggerReason, transactionInfo.stoppedReason).
# OCPP 2.1 E06 (stop transaction options) and C23 (cost limit reached).
END: dict[str, tuple[str, str]] = {
    "card": ("StopAuthorized", "Local"),
    "unplugged": ("EVDeparted", "EVDisconnected"),
    "cost_cap": ("CostLimitReached", "LocalOutOfCredit"),
    "suspended_timeout": ("TimeLimitReached", "TimeLimitReached"),
    "plug_in_timeout": ("EVConnectTimeout", "Timeout"),
    "restart": ("AbnormalCondition", "PowerLoss"),
    "remote": ("RemoteStop", "Remote"),
    "fault": ("AbnormalCondition", "Other"),
    "meter": ("AbnormalCondition", "Other"),
}
END_OTHER = ("AbnormalCondition", "Other")

# OCPI CdrDimensionType of a bill line -> where OCPP 2.1's TotalCostType puts it.
COST_FIELD = {
    "FLAT": "fixed",
    "ENERGY": "energy",
    "TIME": "chargingTime",
    "PARKING_TIME": "idleTime",
}


def timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with a `Z` (OCPP-J 4.1.4)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transaction_id(session_id: str) -> str:
    """The OCPP transactionId of a session (at most 36 characters, OCPP 2.1
    TransactionType): the session id itself (a UUID), or for a longer id (the simulator's)
    a UUID derived from it by name (RFC 4122 version 5), so both sides can compute it."""
    if len(session_id) <= 36:
        return session_id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ev-terminal:session:{session_id}"))


def wire_amount(money: Money) -> int | float:
    """Major units as a JSON number (see the module docstring for why this is exact)."""
    major = money.to_decimal()
    if major == major.to_integral_value():
        return int(major)
    return float(major)


def _decimal_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def id_token(session: Session) -> Payload:
    """C18: a bank card's hold is the idToken `DirectPayment`, its value the payment
    reference (the authorization id the kiosk chose, which the gateway keeps). A session paid
    on the web (pay by phone, the C24/C25 ad hoc payment, where the gateway holds the money)
    is a direct payment too, its reference the gateway's authorization id. An RFID token is
    the kiosk's keyed hash of it (type `Local`: the kiosk never keeps the UID)."""
    if session.card.kind in (CardKind.PAYMENT, CardKind.WEB):
        return {"idToken": session.session_id, "type": "DirectPayment"}
    return {"idToken": session.card.token[:255], "type": "Local"}


def meter_value(
    at: datetime,
    register_wh: int,
    *,
    context: str,
    power_w: int | None = None,
    signed: Payload | None = None,
) -> Payload:
    energy: Payload = {
        "value": register_wh,
        "measurand": ENERGY,
        "context": context,
        "unitOfMeasure": {"unit": "Wh"},
    }
    if signed is not None:
        energy["signedMeterValue"] = signed
    values = [energy]
    if power_w is not None:
        values.append(
            {
                "value": power_w,
                "measurand": POWER,
                "context": context,
                "unitOfMeasure": {"unit": "W"},
            }
        )
    return {"timestamp": timestamp(at), "sampledValue": values}


def signed_meter_value(ocmf: str) -> Payload:
    """An OCMF reading as OCPP 2.1's SignedMeterValueType: the OCMF text itself, the
    encoding named "OCMF" (the signature algorithm is inside the OCMF header)."""
    return {"signedMeterData": ocmf, "encodingMethod": "OCMF"}


def cost_details(session: Session, bill: Bill | None, ended_at: datetime) -> Payload:
    """OCPP 2.1 CostDetailsType from the kiosk's own tariff engine: one amount per bill
    dimension (excl. VAT, with its tax rate), the totals excl. and incl. VAT, and the usage."""
    currency = session.currency
    total: Payload = {"currency": currency, "typeOfCost": "NormalCost"}
    if bill is None:
        total["total"] = {"exclTax": 0, "inclTax": 0}
    else:
        sums: dict[str, Money] = {}
        rates: dict[str, Decimal] = {}
        for line in bill.lines:
            name = COST_FIELD.get(line.dimension)
            if name is not None:
                sums[name] = sums.get(name, Money.zero(currency)) + line.excl_vat
                rates[name] = line.vat_percent
        for name, excl in sums.items():
            total[name] = {
                "exclTax": wire_amount(excl),
                "taxRates": [{"type": "VAT", "tax": _decimal_number(rates[name])}],
            }
        total["total"] = {
            "exclTax": wire_amount(bill.total_excl_vat),
            "inclTax": wire_amount(bill.total),
        }
    start = session.charging_started_at or session.started_at
    charging_s = max(0, int((ended_at - start).total_seconds()))
    usage = {"energy": session.energy_wh, "chargingTime": charging_s, "idleTime": 0}
    return {"totalCost": total, "totalUsage": usage}


def transaction_event(
    *,
    event_type: str,
    trigger: str,
    session: Session,
    seq_no: int,
    offline: bool,
    at: datetime,
    evse: tuple[int, int],
    charging_state: str | None = None,
    stopped_reason: str | None = None,
    max_cost: Money | None = None,
    meter: list[Payload] | None = None,
    costs: Payload | None = None,
    remote: tuple[int, str] | None = None,
) -> Payload:
    """One TransactionEvent. `remote`: (remoteStartId, the idToken's type) of a session the
    CSMS started (F01), carried on Started."""
    info: Payload = {"transactionId": transaction_id(session.session_id)}
    if charging_state is not None:
        info["chargingState"] = charging_state
    if stopped_reason is not None:
        info["stoppedReason"] = stopped_reason
    if max_cost is not None:
        info["transactionLimit"] = {"maxCost": wire_amount(max_cost)}
    payload: Payload = {
        "eventType": event_type,
        "timestamp": timestamp(at),
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": info,
    }
    if offline:
        payload["offline"] = True
    if event_type == "Started":
        payload["idToken"] = id_token(session)
        if remote is not None:
            # The CSMS's own idToken, as it sent it in RequestStartTransaction (an RFID token
            # it authorizes, or the reference of a web payment it ran: C25 DirectPayment).
            info["remoteStartId"] = remote[0]
            payload["idToken"] = {"idToken": session.card.token[:255], "type": remote[1]}
        payload["evse"] = {"id": evse[0], "connectorId": evse[1]}
    if meter:
        payload["meterValue"] = meter
    if costs is not None:
        payload["costDetails"] = costs
    return payload


def notify_settlement(
    *,
    psp_ref: str,
    status: str,
    amount: Money,
    at: datetime,
    tx_id: str | None,
    status_info: str | None = None,
    receipt_id: str | None = None,
    receipt_url: str | None = None,
) -> Payload:
    """C19-C22: the outcome of a payment: Settled (captured), Canceled (hold released),
    Rejected (the processor refused the capture) or Failed (no answer yet; retried)."""
    payload: Payload = {
        "pspRef": psp_ref,
        "status": status,
        "settlementAmount": wire_amount(amount),
        "settlementTime": timestamp(at),
    }
    if tx_id is not None:
        payload["transactionId"] = tx_id
    if status_info:
        payload["statusInfo"] = status_info[:500]
    if receipt_id is not None:
        payload["receiptId"] = receipt_id[:50]
    if receipt_url is not None:
        payload["receiptUrl"] = receipt_url[:2000]
    return payload


def connector_status(kiosk: Kiosk) -> str:
    """OCPP 2.1 ConnectorStatusEnumType from the machine's state: Faulted on a fault,
    Unavailable out of service (or not yet up), Occupied while a vehicle is plugged in or a
    session runs, else Available."""
    if kiosk.faults:
        return "Faulted"
    if isinstance(kiosk.phase, Booting):
        return "Unavailable"
    if kiosk.session is not None or kiosk.pilot.connected:
        return "Occupied"
    if kiosk.out_of_service:
        return "Unavailable"
    return "Available"


def status_notification(status: str, at: datetime, evse: tuple[int, int]) -> Payload:
    return {
        "timestamp": timestamp(at),
        "connectorStatus": status,
        "evseId": evse[0],
        "connectorId": evse[1],
    }


def meter_values(at: datetime, register_wh: int, evse_id: int) -> Payload:
    """A MeterValuesRequest with the energy register, sent on request (F06, context
    `Trigger`)."""
    return {"evseId": evse_id, "meterValue": [meter_value(at, register_wh, context="Trigger")]}


# The kiosk's reports (`Report` kind, the detail's first word) that are OCPP 2.1 security
# events (Part 2, appendix "Security events"): the event type, and whether it is critical
# (A04.FR.02: a critical event is pushed to the CSMS, queued while offline).
SECURITY_EVENTS: dict[tuple[str, str | None], tuple[str, bool]] = {
    ("started", None): ("StartupOfTheDevice", True),
    ("technician", "login"): ("MaintenanceLoginAccepted", False),
    ("security", "login_failed"): ("MaintenanceLoginFailed", False),
    ("security", "login_refused"): ("MaintenanceLoginFailed", False),
    ("security", "lockout"): ("MaintenanceLoginFailed", False),
}
RESET_OR_REBOOT = "ResetOrReboot"
INVALID_CSMS_CERTIFICATE = "InvalidCsmsCertificate"
FAILED_TO_AUTHENTICATE = "FailedToAuthenticateAtCsms"


def security_event_type(kind: str, detail: str) -> str | None:
    """The security event type a kiosk report stands for, or None if it is none."""
    first = detail.split(" ", 1)[0] if detail else ""
    found = SECURITY_EVENTS.get((kind, first)) or SECURITY_EVENTS.get((kind, None))
    return found[0] if found is not None else None


def security_event(event_type: str, at: datetime, tech_info: str | None = None) -> Payload:
    """A04: SecurityEventNotificationRequest (techInfo is the kiosk's detail: never card
    data, never a secret)."""
    payload: Payload = {"type": event_type[:50], "timestamp": timestamp(at)}
    if tech_info:
        payload["techInfo"] = tech_info[:255]
    return payload


def max_cost(answer: Payload, currency: str) -> Money | None:
    """A TransactionEventResponse's `transactionLimit.maxCost` in minor units of `currency`,
    rounded down (a limit is never exceeded by rounding); None without one."""
    limit = answer.get("transactionLimit", {}).get("maxCost")
    if limit is None:
        return None
    quantum = Decimal(1).scaleb(-minor_exponent(currency))
    major = max(Decimal(str(limit)).quantize(quantum, rounding=ROUND_FLOOR), Decimal(0))
    return Money.from_decimal(major, currency)
