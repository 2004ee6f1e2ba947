"""What every page of the operator's console does before its own work: find the signed-in
operator, send a visitor who is not signed in to the sign-in page, check the form's CSRF token,
and refuse a change to a read-only operator. Pages are views (house style 17): a page handler
asks the frame for its viewer, reads one snapshot, and renders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from gateway.ledger.operators import Operator, Operators
from gateway.ledger.web_schema import ADMIN
from gateway.web.sessions import Sessions, WebSession, csrf_ok
from gateway.web.templating import Pages, page_headers

SIGN_IN = "/console/sign-in"

# The console's pages in the navigation, in order.
NAV: tuple[tuple[str, str], ...] = (
    ("/console/revenue", "Revenue"),
    ("/console/fleet", "Fleet"),
    ("/console/money", "Money"),
    ("/console/payments", "Payments"),
    ("/console/tariffs", "Tariffs"),
    ("/console/tokens", "Tokens"),
    ("/console/audit", "Audit log"),
)
HOME = NAV[0][0]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in operator looking at a page."""

    operator: Operator
    session: WebSession

    @property
    def username(self) -> str:
        return self.operator.username

    @property
    def role(self) -> str:
        return self.operator.role

    @property
    def is_admin(self) -> bool:
        return self.operator.role == ADMIN


class ConsoleFrame:
    def __init__(
        self,
        pages: Pages,
        operators: Operators,
        sessions: Sessions,
        client_address: Callable[[Request], str],
    ) -> None:
        self.pages = pages
        self.operators = operators
        self.sessions = sessions
        self.client_address = client_address

    def viewer(self, request: Request) -> Viewer | None:
        session = self.sessions.find(request)
        if session is None:
            return None
        operator = self.operators.by_id(session.subject)
        return None if operator is None else Viewer(operator, session)

    def page(self, request: Request) -> Viewer | Response:
        """The viewer of a page, or the redirect to sign in (303)."""
        viewer = self.viewer(request)
        if viewer is None:
            return RedirectResponse(SIGN_IN, status_code=303, headers=page_headers())
        return viewer

    def change(
        self, request: Request, csrf: str | None, *, admin: bool = True
    ) -> Viewer | Response:
        """The viewer allowed to make a change: signed in, the form's CSRF token the session's,
        and (with `admin`) an admin. Otherwise the refusal (403), and nothing changes."""
        viewer = self.viewer(request)
        if viewer is None:
            return self.refuse(None, 403, "Sign in first", "This needs a signed-in operator.")
        if not csrf_ok(viewer.session.csrf, csrf):
            return self.refuse(
                viewer, 403, "Form refused", "The form had no valid token. Open the page again."
            )
        if admin and not viewer.is_admin:
            return self.refuse(
                viewer, 403, "Not allowed", "A read-only operator can see but not change this."
            )
        return viewer

    def render(
        self,
        viewer: Viewer | None,
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

    def refuse(self, viewer: Viewer | None, status: int, heading: str, message: str) -> Response:
        return self.render(
            viewer,
            "console/message.html",
            "",
            {"heading": heading, "message": message},
            status_code=status,
        )
