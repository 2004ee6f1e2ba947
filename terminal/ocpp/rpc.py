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
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, validate_payload

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


__all__ = ["SUBPROTOCOL", "VERSION", "CallRefused", "OCPPError", "request"]
