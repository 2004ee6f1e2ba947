"""The operator's console: its pages, each behind `ConsoleFrame` (signed in; changes by admins
only, with the session's CSRF token). Built by `web_app` in `gateway.web.site`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gateway.ledger.console_views import ONLINE_WITHIN, active_sessions, fleet
from gateway.web.console_frame import HOME, ConsoleFrame
from gateway.web.templating import page_headers

AUDIT = "/console/audit"
FLEET = "/console/fleet"


def console_routes(frame: ConsoleFrame) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    def home(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        return RedirectResponse(HOME, status_code=303, headers=page_headers())

    @router.get(AUDIT)
    def audit(request: Request) -> Response:
        """Every change an operator made, newest first (every operator may read it)."""
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        entries = frame.operators.audit_entries()
        return frame.render(viewer, "console/audit.html", AUDIT, {"entries": entries})

    @router.get(FLEET)
    def fleet_page(request: Request) -> Response:
        """Every terminal: last seen, online, active faults, out of service, open holds; and
        the sessions under way."""
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        engine = frame.operators.engine
        context = {
            "terminals": fleet(engine),
            "sessions": active_sessions(engine),
            "now": frame.operators.clock(),
            "online_minutes": int(ONLINE_WITHIN.total_seconds() // 60),
        }
        return frame.render(viewer, "console/fleet.html", FLEET, context)

    return router
