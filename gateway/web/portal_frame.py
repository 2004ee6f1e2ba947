"""What every page of the driver's portal does first: find the signed-in driver (a session
cookie of its own, apart from the console's), send a visitor to sign in, and check a form's
CSRF token. A driver's data is read only through `gateway.ledger.drivers`, which filters by the
driver's own cards and tokens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from gateway.ledger.drivers import Drivers
from gateway.web.sessions import Sessions, WebSession, csrf_ok
from gateway.web.templating import Pages, page_headers

SIGN_IN = "/account/sign-in"
NAV: tuple[tuple[str, str], ...] = (
    ("/account", "My sessions"),
    ("/account/cards", "Cards and tokens"),
)


@dataclass(frozen=True, slots=True)
class Driver:
    driver_id: int
    email: str
    session: WebSession


class PortalFrame:
    def __init__(
        self,
        pages: Pages,
        drivers: Drivers,
        sessions: Sessions,
        client_address: Callable[[Request], str],
    ) -> None:
        self.pages = pages
        self.drivers = drivers
        self.sessions = sessions
        self.client_address = client_address

    def viewer(self, request: Request) -> Driver | None:
        session = self.sessions.find(request)
        if session is None or not session.subject.isdigit():
            return None
        email = self.drivers.email(int(session.subject))
        return None if email is None else Driver(int(session.subject), email, session)

    def page(self, request: Request) -> Driver | Response:
        viewer = self.viewer(request)
        if viewer is None:
            return RedirectResponse(SIGN_IN, status_code=303, headers=page_headers())
        return viewer

    def change(self, request: Request, csrf: str | None) -> Driver | Response:
        viewer = self.viewer(request)
        if viewer is None:
            return self.message(None, 403, "Sign in first", "This needs a signed-in driver.")
        if not csrf_ok(viewer.session.csrf, csrf):
            return self.message(
                viewer, 403, "Form refused", "The form had no valid token. Open the page again."
            )
        return viewer

    def render(
        self,
        viewer: Driver | None,
        template: str,
        here: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        frame = {
            "viewer": viewer,
            "csrf": viewer.session.csrf if viewer is not None else "",
            "nav": NAV,
            "here": here,
        }
        return self.pages.render(
            template, {**frame, **context}, status_code=status_code, headers=headers
        )

    def message(self, viewer: Driver | None, status: int, heading: str, text: str) -> Response:
        return self.render(
            viewer,
            "account/message.html",
            "",
            {"heading": heading, "message": text},
            status_code=status,
        )
