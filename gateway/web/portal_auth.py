"""The driver's sign-in without a password: an e-mailed one-time link (15 minutes, once).

The link opens a page with a button; only the button (a POST with the page's token) spends
the link, so a mail scanner that fetches links does not sign anyone in or use the link up.
Whether an address has an account is never said: every request gets the same answer.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from gateway.web.mailer import Mailer, MailNotSent
from gateway.web.portal_frame import SIGN_IN, PortalFrame
from gateway.web.sessions import pre_session_ok, pre_session_token, remember_pre_session
from gateway.web.templating import page_headers
from gateway.web.throttle import Limit, Throttle

log = logging.getLogger("ev_gateway.portal")

# A practical check (the full RFC 5322 grammar is not what a person types): one @, a dot in
# the domain, no spaces; at most 254 characters (RFC 5321's path limit).
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
LinkToken = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{40,64}$")]
PER_ADDRESS = Limit(attempts=20, window=timedelta(minutes=10))
PER_EMAIL = Limit(attempts=5, window=timedelta(minutes=10))  # links to one inbox


def portal_sign_in_routes(
    frame: PortalFrame, throttle: Throttle, mailer: Mailer | None, public_url: str | None
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def form(request: Request, template: str, context: dict[str, object], status: int) -> Response:
        token = pre_session_token(request)
        response = frame.render(
            None, template, SIGN_IN, {**context, "csrf": token}, status_code=status
        )
        remember_pre_session(response, token)
        return response

    @router.get(SIGN_IN)
    def sign_in_page(request: Request) -> Response:
        if frame.viewer(request) is not None:
            return RedirectResponse("/account", status_code=303, headers=page_headers())
        return form(request, "account/sign_in.html", {"message": "", "email": ""}, 200)

    @router.post(SIGN_IN)
    def send_link(request: Request, email: str = Form(""), csrf: str = Form("")) -> Response:
        email = email.strip().lower()
        if not pre_session_ok(request, csrf):
            return form(
                request,
                "account/sign_in.html",
                {"message": "The form had expired. Please try again.", "email": email},
                403,
            )
        if len(email) > 254 or not EMAIL.fullmatch(email):
            return form(
                request,
                "account/sign_in.html",
                {"message": "That is not an e-mail address.", "email": email},
                400,
            )
        if not (
            throttle.allow(f"portal-ip:{frame.client_address(request)}", PER_ADDRESS)
            and throttle.allow(f"portal-email:{email}", PER_EMAIL)
        ):
            return form(
                request,
                "account/sign_in.html",
                {
                    "message": "Too many sign-in requests. Wait a few minutes and try again.",
                    "email": email,
                },
                429,
            )
        if mailer is None:
            return frame.refuse(
                None, 503, "E-mail is not set up", "This gateway cannot send sign-in links yet."
            )
        token = secrets.token_urlsafe(32)
        frame.drivers.new_link(email, token)
        base = (public_url or str(request.base_url)).rstrip("/")
        try:
            mailer.send(
                email,
                "Your sign-in link",
                f"Sign in to see your charging sessions:\n\n{base}{SIGN_IN}/{token}\n\n"
                "The link works once, for 15 minutes. "
                "If you did not ask for it, ignore this message.\n",
            )
        except MailNotSent as exc:
            log.error("event=sign_in_mail_failed error=%s", exc)
            return frame.refuse(
                None, 503, "Not sent", "The sign-in link could not be sent. Try again later."
            )
        return frame.render(None, "account/link_sent.html", SIGN_IN, {"email": email})

    @router.get(SIGN_IN + "/{token}")
    def confirm_page(request: Request, token: LinkToken) -> Response:
        return form(request, "account/confirm.html", {"token": token}, 200)

    @router.post(SIGN_IN + "/{token}")
    def use_link(request: Request, token: LinkToken, csrf: str = Form("")) -> Response:
        if not pre_session_ok(request, csrf):
            return form(request, "account/confirm.html", {"token": token}, 403)
        driver_id = frame.drivers.use_link(token)
        if driver_id is None:
            return frame.refuse(
                None,
                400,
                "Link not valid",
                "This link was used already or has expired. Ask for a new one.",
            )
        response = RedirectResponse("/account", status_code=303, headers=page_headers())
        frame.sessions.start(response, str(driver_id))
        return response

    @router.post("/account/sign-out")
    def sign_out(request: Request, csrf: str = Form("")) -> Response:
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        response = RedirectResponse(SIGN_IN, status_code=303, headers=page_headers())
        frame.sessions.end(viewer.session, response)
        return response

    return router
