"""The driver's portal's frame: the signed-in driver as viewer (a session cookie of its own,
apart from the console's; `gateway.web.frame` does the rest). A driver's data is read only
through `gateway.ledger.drivers`, which filters by the driver's own cards and tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from gateway.ledger.drivers import Drivers
from gateway.web.frame import Frame
from gateway.web.sessions import Sessions, WebSession
from gateway.web.templating import Pages

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


class PortalFrame(Frame[Driver]):
    SIGN_IN = SIGN_IN
    NAV = NAV
    MESSAGE = "account/message.html"
    WHO = "driver"

    def __init__(
        self,
        pages: Pages,
        drivers: Drivers,
        sessions: Sessions,
        client_address: Callable[[Request], str],
    ) -> None:
        super().__init__(pages, sessions, client_address)
        self.drivers = drivers

    def viewer_of(self, session: WebSession) -> Driver | None:
        if not session.subject.isdigit():
            return None
        email = self.drivers.email(int(session.subject))
        return None if email is None else Driver(int(session.subject), email, session)

    def change(self, request: Request, csrf: str | None) -> Driver | Response:
        """The driver sending a form: signed in, with the session's CSRF token."""
        return self.signed_form(request, csrf)
