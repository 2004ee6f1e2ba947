"""The console's station registry: where each terminal stands (name, site, address, IANA time
zone), which charge point operator sells there, and its reading key; and the operators (name,
address, VAT number) who appear as the seller on receipts and invoices. Admins change them,
each change audited (`gateway.ledger.station_registry`); a read-only operator sees them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.ledger import station_registry as registry
from gateway.ledger.console_views import fleet
from gateway.web.console_frame import ConsoleFrame
from gateway.web.templating import page_headers

STATIONS = "/console/stations"


def station_routes(frame: ConsoleFrame) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = frame.operators.engine

    def page(request: Request, error: str = "", status_code: int = 200) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        known = registry.station_list(engine)
        listed = {s.terminal_id for s in known}
        cpos = registry.cpo_list(engine)
        # ?edit=TERMINAL / ?operator=ID: the form filled with that entry (or just the id of a
        # terminal heard from but not registered yet), so a change retypes nothing.
        edit = request.query_params.get("edit", "")[:64]
        editing = next((s for s in known if s.terminal_id == edit), None)
        chosen = request.query_params.get("operator", "")[:32]
        return frame.render(
            viewer,
            "console/stations.html",
            STATIONS,
            {
                "stations": known,
                "unlisted": sorted({t.terminal_id for t in fleet(engine)} - listed),
                "cpos": cpos,
                "editing": editing,
                "edit_id": edit,
                "editing_cpo": next((c for c in cpos if c.cpo_id == chosen), None),
                "error": error,
            },
            status_code=status_code,
        )

    def save(request: Request, csrf: str, what: str, put: Callable[[str], object]) -> Response:
        """An admin's change to the registry: `put(actor)` once the console allows the
        change (role, CSRF); a refusal shows the page again saying why (400), else back to
        the list (303)."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        try:
            put(viewer.username)
        except registry.RegistryError as exc:
            return page(request, f"{what} not saved: {exc}", 400)
        return RedirectResponse(STATIONS, status_code=303, headers=page_headers())

    @router.get(STATIONS)
    def stations_page(request: Request) -> Response:
        return page(request)

    @router.post(STATIONS)
    def station_post(
        request: Request,
        *,
        terminal_id: str = Form(""),
        name: str = Form(""),
        site: str = Form(""),
        address: str = Form(""),
        timezone: str = Form(""),
        cpo_id: str = Form(""),
        ocmf_public_key: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        return save(
            request,
            csrf,
            "Station",
            lambda actor: registry.put_station(
                engine,
                terminal_id=terminal_id,
                name=name,
                site=site,
                address=address,
                timezone=timezone.strip(),
                cpo_id=cpo_id.strip(),
                ocmf_public_key=ocmf_public_key,
                audit=frame.operators.audit,
                actor=actor,
            ),
        )

    @router.post(STATIONS + "/operators")
    def cpo_post(
        request: Request,
        *,
        cpo_id: str = Form(""),
        name: str = Form(""),
        address: str = Form(""),
        vat_id: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        return save(
            request,
            csrf,
            "Operator",
            lambda actor: registry.put_cpo(
                engine,
                cpo_id=cpo_id.strip(),
                name=name,
                address=address,
                vat=vat_id,
                audit=frame.operators.audit,
                actor=actor,
            ),
        )

    return router
