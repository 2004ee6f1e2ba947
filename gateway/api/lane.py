"""The money routes' fast lane: a well-formed money POST served without the framework's
per-request work.

A money request (authorize, capture, void, increment) spends more CPU in FastAPI and
Starlette (eight middleware layers, route matching over every page of the site, dependency
solving, validating the body a field at a time) than in the database and the processor
together. This ASGI layer, outermost in the app, serves the requests that are exactly what a
kiosk sends: `POST` to a money path whose id matches the path's pattern, `Content-Type:
application/json`, an `Idempotency-Key` header, a body within the size limit that parses and
validates as the route's wire model. It calls the same route function the app's router
would, in the same thread pool, with the same model instance.

Everything else — a bad body, a missing header, another content type, a body too large —
goes on to the app unchanged (with the body bytes already read handed on), so every refusal
is the one the app gives and the OpenAPI document is the app's. Nothing here decides a
request's outcome: it only skips work for requests the app would have let through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.wire import Strict

ASGIApp = Any
JSON = b"application/json"
IDEMPOTENCY_KEY = b"idempotency-key"

# The route function: (request, body, Idempotency-Key, path parameters) -> its answer.
Handler = Callable[[Request, Any, str, dict[str, str]], Response]


@dataclass(frozen=True, slots=True)
class LaneRoute:
    """A money POST: its path (named groups are its path parameters, each already held to
    the route's own pattern), its wire model, and the route function."""

    path: re.Pattern[str]
    model: type[Strict]
    handler: Handler


class MoneyLane:
    """ASGI middleware serving `routes`' well-formed requests itself (module docstring)."""

    def __init__(self, app: ASGIApp, routes: Sequence[LaneRoute], limit: int) -> None:
        self.app = app
        self.routes = tuple(routes)
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        for route in self.routes:
            matched = route.path.fullmatch(path)
            if matched is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        content_type = key = length = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == IDEMPOTENCY_KEY and key is None:
                key = value
            elif name == b"content-length" and length is None:
                length = value
        if (
            content_type != JSON
            or key is None
            or length is None
            or not length.isdigit()
            or int(length) > self.limit
        ):
            await self.app(scope, receive, send)
            return
        messages: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit or not message.get("more_body", False):
                break
        complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body")
        body = None
        if complete and size <= self.limit:
            body = _validated(route.model, b"".join(chunks))
        if body is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        request = Request(scope, receive)
        response = await run_in_threadpool(
            route.handler, request, body, key.decode("latin-1"), matched.groupdict()
        )
        await response(scope, receive, send)


def _validated(model: type[Strict], raw: bytes) -> Strict | None:
    """The body as `model` (validated as the app validates a JSON body: parsed, then checked
    in Python mode), or None when the app must answer it."""
    try:
        return model.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # not JSON, not UTF-8, or not the model
        return None


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    """`receive` for the app: the messages already read, then the rest of the stream."""
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
