"""The operator's console's frame: the signed-in operator as viewer (`gateway.web.frame` does
the rest), and a change refused to a read-only operator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from gateway.ledger.operators import Operator, Operators
from gateway.ledger.web_schema import ADMIN
from gateway.web.frame import Frame
from gateway.web.sessions import Sessions, WebSession
from gateway.web.templating import Pages

SIGN_IN = "/console/sign-in"

# The console's pages in the navigation, in order.
NAV: tuple[tuple[str, str], ...] = (
    ("/console/revenue", "Revenue"),
    ("/console/fleet", "Fleet"),
    ("/console/money", "Money"),
    ("/console/payments", "Payments"),
    ("/console/tariffs", "Tariffs"),
    ("/console/stations", "Stations"),
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


class ConsoleFrame(Frame[Viewer]):
    SIGN_IN = SIGN_IN
    NAV = NAV
    MESSAGE = "console/message.html"
    WHO = "operator"

    def __init__(
        self,
        pages: Pages,
        operators: Operators,
        sessions: Sessions,
        client_address: Callable[[Request], str],
    ) -> None:
        super().__init__(pages, sessions, client_address)
        self.operators = operators

    def viewer_of(self, session: WebSession) -> Viewer | None:
        operator = self.operators.by_id(session.subject)
        return None if operator is None else Viewer(operator, session)

    def change(
        self, request: Request, csrf: str | None, *, admin: bool = True
    ) -> Viewer | Response:
        """The viewer allowed to make a change: signed in, the form's CSRF token the session's,
        and (with `admin`) an admin. Otherwise the refusal (403), and nothing changes."""
        viewer = self.signed_form(request, csrf)
        if isinstance(viewer, Viewer) and admin and not viewer.is_admin:
            return self.refuse(
                viewer, 403, "Not allowed", "A read-only operator can see but not change this."
            )
        return viewer
