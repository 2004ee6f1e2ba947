"""The console's sign-in and sign-out pages (`gateway.web.operator_auth` decides)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.web.console_frame import HOME, SIGN_IN, ConsoleFrame
from gateway.web.operator_auth import OperatorSignIn, Outcome
from gateway.web.sessions import pre_session_ok, pre_session_token, remember_pre_session
from gateway.web.templating import page_headers

REFUSED = "The user name, password or code is not right, or the account is locked for a while."
THROTTLED = "Too many sign-in attempts. Wait a few minutes and try again."


def sign_in_routes(frame: ConsoleFrame, sign_in: OperatorSignIn) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def form(request: Request, message: str, username: str, status_code: int) -> Response:
        token = pre_session_token(request)
        response = frame.render(
            None,
            "console/sign_in.html",
            SIGN_IN,
            {"message": message, "username": username, "csrf": token},
            status_code=status_code,
        )
        remember_pre_session(response, token)
        return response

    @router.get(SIGN_IN)
    def sign_in_page(request: Request) -> Response:
        if frame.viewer(request) is not None:
            return RedirectResponse(HOME, status_code=303, headers=page_headers())
        return form(request, "", "", 200)

    @router.post(SIGN_IN)
    def sign_in_post(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        code: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        if not pre_session_ok(request, csrf):
            return form(request, "The form had expired. Please sign in again.", username, 403)
        result = sign_in.attempt(frame.client_address(request), username, password, code)
        if result.outcome is Outcome.THROTTLED:
            return form(request, THROTTLED, username, 429)
        if result.outcome is Outcome.REFUSED or result.operator is None:
            return form(request, REFUSED, username, 401)
        response = RedirectResponse(HOME, status_code=303, headers=page_headers())
        frame.sessions.start(response, str(result.operator.id))
        return response

    @router.post("/console/sign-out")
    def sign_out(request: Request, csrf: str = Form("")) -> Response:
        viewer = frame.change(request, csrf, admin=False)
        if isinstance(viewer, Response):
            return viewer
        response = RedirectResponse(SIGN_IN, status_code=303, headers=page_headers())
        frame.sessions.end(viewer.session, response)
        frame.operators.record(viewer.username, "operator.sign_out", viewer.username, {})
        return response

    return router
