"""Requests on an OCPP-J connection, validated against the OCA schemas both ways.

The `ocpp` package's `ChargePoint.call` takes its own dataclasses and renames keys from
snake_case to camelCase on the way out, which gets some OCPP 2.1 names wrong (`receiptUrl`
becomes `receiptURL`). The kiosk keeps its payloads in the wire form, so this sends them as
they are, through the package's own `Call`, `validate_payload` and response matching: the
request is validated before it is sent and the answer before it is believed (never skipped).
Incoming requests go through the package's `@on` handlers, which validate the same way.
"""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import ChargePoint
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, MessageType, unpack, validate_payload
from ocpp.v21.enums import Action

SUBPROTOCOL = "ocpp2.1"
VERSION = "2.1"


class CallRefused(Exception):
    """The peer answered a request with a CALLERROR (OCPP-J 4.2.3)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


async def request(peer: ChargePoint, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return the answer's payload. `ocpp.exceptions.ValidationError`
    if either side is not valid against the schema, `CallRefused` on a CALLERROR,
    `asyncio.TimeoutError` if no answer comes within the peer's response timeout."""
    call = Call(unique_id=str(peer._unique_id_generator()), action=action, payload=payload)
    await validate_payload(call, VERSION)
    async with peer._call_lock:
        await peer._send(call.to_json())
        response = await peer._get_specific_response(call.unique_id, peer._response_timeout)
    if response.message_type_id == MessageType.CallError:
        raise CallRefused(response.error_code, response.error_description)
    response.action = action
    await validate_payload(response, VERSION)
    answer: dict[str, Any] = response.payload
    return answer


def unhandled(peer: ChargePoint, raw_msg: str | bytes) -> str | None:
    """The CALLERROR for a request this peer has no handler for, or None. OCPP-J (Part 4,
    4.2.3) answers every CALL: `NotImplemented` for an OCPP 2.1 action without a handler,
    `NotSupported` for a name that is no OCPP 2.1 action. The `ocpp` package (2.1.0) answers
    neither for version 2.1 and leaves the sender waiting for its timeout."""
    try:
        msg = unpack(raw_msg)
    except OCPPError:
        return None  # the package logs what it cannot parse
    if msg.message_type_id != MessageType.Call or msg.action in peer.route_map:
        return None
    cause = {"cause": f"No handler for {msg.action}"}
    error: OCPPError = (
        OcppNotImplemented(details=cause)
        if msg.action in set(Action)
        else NotSupportedError(details={"cause": f"{msg.action} is not an OCPP {VERSION} action"})
    )
    call_error: str = msg.create_call_error(error).to_json()
    return call_error


__all__ = ["SUBPROTOCOL", "VERSION", "CallRefused", "OCPPError", "request", "unhandled"]
