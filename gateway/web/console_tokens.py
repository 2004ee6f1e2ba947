"""The console's token lists: the tokens that started sessions and the allow and deny lists
the kiosks sync (`GET /v1/terminal-config`). A blocked token is declined at a kiosk from its
next sync on, online and offline; an allowed one may start while the gateway is unreachable.
Admins change the lists; every change is audited."""

from __future__ import annotations

import re

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.ledger.token_admin import LISTS, TOKEN_PATTERN, listed, put_token, tokens_seen
from gateway.web.console_frame import ConsoleFrame
from gateway.web.templating import page_headers

TOKENS = "/console/tokens"


def token_routes(frame: ConsoleFrame) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = frame.operators.engine

    def page(request: Request, error: str = "", status_code: int = 200) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        return frame.render(
            viewer,
            "console/tokens.html",
            TOKENS,
            {"seen": tokens_seen(engine), "listed": listed(engine), "error": error},
            status_code=status_code,
        )

    @router.get(TOKENS)
    def tokens_page(request: Request) -> Response:
        return page(request)

    @router.post(TOKENS)
    def tokens_post(
        request: Request, token: str = Form(""), to: str = Form(""), csrf: str = Form("")
    ) -> Response:
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        token = token.strip()
        if not re.fullmatch(TOKEN_PATTERN, token):
            return page(request, "Token: 8-64 letters, digits, '.', '_', ':' or '-'.", 400)
        if to not in (*LISTS, "none"):
            return page(request, "List: allow, deny or none.", 400)
        put_token(
            engine,
            token,
            None if to == "none" else to,
            at=frame.operators.clock(),
            audit=frame.operators.audit,
            actor=viewer.username,
        )
        return RedirectResponse(TOKENS, status_code=303, headers=page_headers())

    return router
