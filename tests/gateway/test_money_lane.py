"""The money routes' fast lane (`gateway.api.lane`): a well-formed money POST is served by
the route function without reaching the app behind the lane; anything else reaches the app
with every byte of its body, as sent. Driven with real ASGI messages."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import Request
from starlette.responses import JSONResponse, Response

from gateway import wire
from gateway.api.lane import LaneRoute, MoneyLane

LIMIT = 1000
PATH = re.compile(r"/v1/authorizations/(?P<authorization_id>[A-Za-z0-9_-]{8,64})/void")


class Behind:
    """The app behind the lane: records what reached it, and the body it could read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


def _handler(request: Request, body: Any, key: str, path: dict[str, str]) -> Response:
    assert isinstance(body, wire.VoidRequest)
    content = {"key": key, "id": path["authorization_id"], "reason": body.reason}
    return JSONResponse(content=content, status_code=200)


def _call(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, path: str, method: str = "POST"
) -> tuple[int, bytes, Behind]:
    behind = Behind()
    lane = MoneyLane(behind, [LaneRoute(PATH, wire.VoidRequest, _handler)], LIMIT)
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # A loop of its own in a thread of its own: a page test's Playwright (sync API) may have
    # left its loop marked as running on the main thread after a failure.
    with ThreadPoolExecutor(max_workers=1) as runner:
        runner.submit(asyncio.run, lane(scope, receive, send)).result()
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), behind


def _headers(body: bytes, **extra: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"idempotency-key", b"k-1"),
    ]
    for name, value in extra.items():
        header = name.replace("_", "-").encode()
        headers = [(n, v) for n, v in headers if n != header]
        if value:
            headers.append((header, value))
    return headers


VALID = json.dumps({"reason": "cancelled"}).encode()
VOID = "/v1/authorizations/auth-lane-0001/void"


def test_a_well_formed_money_post_is_served_by_its_route_function() -> None:
    status, answer, behind = _call(_headers(VALID), [VALID[:5], VALID[5:]], path=VOID)
    assert status == 200
    assert json.loads(answer) == {"key": "k-1", "id": "auth-lane-0001", "reason": "cancelled"}
    assert behind.bodies == []


@pytest.mark.parametrize(
    ("case", "headers", "chunks", "path"),
    [
        ("not JSON", _headers(b"{nope"), [b"{nope"], VOID),
        ("not the model", _headers(b'{"why":1}'), [b'{"why":1}'], VOID),
        ("strict types", _headers(b'{"reason":5}'), [b'{"reason":5}'], VOID),
        ("no key", _headers(VALID, idempotency_key=b""), [VALID], VOID),
        ("other type", _headers(VALID, content_type=b"text/plain"), [VALID], VOID),
        ("no length", _headers(VALID, content_length=b""), [VALID], VOID),
        ("declared too large", _headers(VALID, content_length=b"1001"), [VALID], VOID),
        ("larger than declared", _headers(b"x" * 10), [b"x" * 600, b"y" * 600], VOID),
        ("id off pattern", _headers(VALID), [VALID], "/v1/authorizations/short/void"),
        ("another path", _headers(VALID), [VALID], "/v1/events"),
    ],
)
def test_anything_else_reaches_the_app_with_its_body_as_sent(
    case: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes], path: str
) -> None:
    status, answer, behind = _call(headers, chunks, path=path)
    assert (status, answer) == (299, b"app"), case
    assert behind.bodies == [b"".join(chunks)], case


def test_a_get_is_never_served_by_the_lane() -> None:
    status, _, behind = _call(_headers(VALID), [VALID], path=VOID, method="GET")
    assert status == 299
    assert behind.bodies == [VALID]
