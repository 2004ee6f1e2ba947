"""A limit on request bodies, enforced before a byte of one is parsed.

A body above the limit is answered 413 at once when its Content-Length says so, and otherwise
as soon as the bytes read pass the limit (chunked uploads); the app never sees it. The limit
fits the largest request a terminal sends (a batch of 100 signed readings is under 0.5 MiB).
"""

from __future__ import annotations

import json
from typing import Any

ASGIApp = Any
DEFAULT_BODY_LIMIT = 1024 * 1024


def _too_large(limit: int) -> bytes:
    return json.dumps(
        {"error": {"code": "body_too_large", "message": f"the body is above {limit} bytes"}}
    ).encode()


class BodyLimit:
    """ASGI middleware: 413 for a request body above `limit` bytes."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        messages: list[dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        body = _too_large(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
