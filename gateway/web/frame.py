"""What every signed-in page does before its own work, for the console and the portal alike:
find the viewer from the session cookie, send a visitor to the sign-in page, check a form's
CSRF token (the session's synchroniser token, OWASP CSRF cheat sheet), and render with the
area's navigation. Each area names its sign-in page, navigation, message template and how a
session's subject becomes a viewer (`ConsoleFrame`, `PortalFrame`); pages are views (house
style 17): a handler asks the frame for its viewer, reads one snapshot, and renders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from gateway.web.sessions import Sessions, WebSession, csrf_ok
from gateway.web.templating import Pages, page_headers


class SignedIn(Protocol):
    """A viewer: whoever is signed in, with their session."""

    @property
    def session(self) -> WebSession: ...


V = TypeVar("V", bound=SignedIn)


class Frame(ABC, Generic[V]):
    """The viewer, CSRF and rendering rules shared by the console and the portal."""

    SIGN_IN: ClassVar[str]
    NAV: ClassVar[tuple[tuple[str, str], ...]]
    MESSAGE: ClassVar[str]  # the template of a refusal or a notice
    WHO: ClassVar[str]  # who may make a change: "operator", "driver"

    def __init__(
        self, pages: Pages, sessions: Sessions, client_address: Callable[[Request], str]
    ) -> None:
        self.pages = pages
        self.sessions = sessions
        self.client_address = client_address

    @abstractmethod
    def viewer_of(self, session: WebSession) -> V | None:
        """The viewer a live session belongs to, or None (their account is gone)."""

    def viewer(self, request: Request) -> V | None:
        session = self.sessions.find(request)
        return None if session is None else self.viewer_of(session)

    def page(self, request: Request) -> V | Response:
        """The viewer of a page, or the redirect to sign in (303)."""
        viewer = self.viewer(request)
        if viewer is None:
            return RedirectResponse(self.SIGN_IN, status_code=303, headers=page_headers())
        return viewer

    def signed_form(self, request: Request, csrf: str | None) -> V | Response:
        """The viewer sending a form: signed in, and the form's CSRF token the session's.
        Otherwise the refusal (403), and nothing changes."""
        viewer = self.viewer(request)
        if viewer is None:
            return self.refuse(None, 403, "Sign in first", f"This needs a signed-in {self.WHO}.")
        if not csrf_ok(viewer.session.csrf, csrf):
            return self.refuse(
                viewer, 403, "Form refused", "The form had no valid token. Open the page again."
            )
        return viewer

    def render(
        self,
        viewer: V | None,
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
            "nav": self.NAV,
            "here": here,
        }
        return self.pages.render(
            template, {**frame, **context}, status_code=status_code, headers=headers
        )

    def refuse(self, viewer: V | None, status: int, heading: str, message: str) -> Response:
        """A page saying why not (or what happened), with `status`."""
        return self.render(
            viewer, self.MESSAGE, "", {"heading": heading, "message": message}, status_code=status
        )
