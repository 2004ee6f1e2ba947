"""The console's tariffs: edit an OCPI 2.2.1 tariff (validated by the kiosk's own parser, the
offending field named), preview its price for an example session with the kiosk's own price
engine, and assign it to stations. A terminal receives its station's tariff in
`GET /v1/terminal-config` (with the lists, under one ETag). Admins change; all operators see
and preview."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from gateway.ledger.console_views import fleet
from gateway.ledger.tariffs import all_tariffs, assign, save, tariff
from gateway.web.console_frame import ConsoleFrame, Viewer
from gateway.web.templating import page_headers
from terminal.tariff.cli import render
from terminal.tariff.engine import ChargingPeriod, OcpiTariff
from terminal.tariff.model import TariffError, parse_tariff

TARIFFS = "/console/tariffs"
TariffId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,36}$")]  # OCPI CiString(36)
MAX_TARIFF_BYTES = 64 * 1024


class PreviewError(ValueError):
    """An example session the preview cannot price; the message names the field."""


def preview(ocpi: str, params: dict[str, str]) -> dict[str, Any]:
    """The bill of an example session: `start` (local, YYYY-MM-DDTHH:MM) in zone `tz`,
    `kwh` delivered over `minutes` of charging, then `idle` minutes plugged in."""
    try:
        zone = ZoneInfo(params.get("tz") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise PreviewError("tz: not a time zone name (such as Europe/Berlin)") from None
    try:
        start = datetime.fromisoformat(params.get("start") or "2026-03-02T18:00").replace(
            tzinfo=zone
        )
    except ValueError:
        raise PreviewError("start: not a local date and time (YYYY-MM-DDTHH:MM)") from None
    numbers: dict[str, Decimal] = {}
    for key, default, most in (
        ("kwh", "20", 1000),
        ("minutes", "60", 24 * 60),
        ("idle", "0", 24 * 60),
    ):
        try:
            numbers[key] = Decimal(params.get(key) or default)
        except InvalidOperation:
            raise PreviewError(f"{key}: not a number") from None
        if not numbers[key].is_finite() or not 0 <= numbers[key] <= most:
            raise PreviewError(f"{key}: between 0 and {most}")
    seconds = int(numbers["minutes"] * 60)
    if seconds <= 0:
        raise PreviewError("minutes: more than 0")
    energy_wh = int(numbers["kwh"] * 1000)
    periods = [
        ChargingPeriod(
            start=start,
            energy_wh=energy_wh,
            power_w=energy_wh * 3600 // seconds,
            current_ma=0,
            charging=True,
        )
    ]
    end = start + timedelta(seconds=seconds)
    if numbers["idle"] > 0:
        periods.append(
            ChargingPeriod(start=end, energy_wh=0, power_w=0, current_ma=0, charging=False)
        )
        end += timedelta(seconds=int(numbers["idle"] * 60))
    engine = OcpiTariff(document=parse_tariff(ocpi.encode()), tz=zone)
    return render(engine, engine.price(start=start.astimezone(zone), periods=periods, end=end))


def tariff_routes(frame: ConsoleFrame) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = frame.operators.engine

    def list_page(
        viewer: Viewer, *, error: str = "", text: str = "", status_code: int = 200
    ) -> Response:
        return frame.render(
            viewer,
            "console/tariffs.html",
            TARIFFS,
            {"tariffs": all_tariffs(engine), "error": error, "text": text},
            status_code=status_code,
        )

    @router.get(TARIFFS)
    def tariffs_page(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        return list_page(viewer)

    @router.post(TARIFFS)
    def save_tariff(request: Request, ocpi: str = Form(""), csrf: str = Form("")) -> Response:
        """A new tariff or a new version of one (by its OCPI id), once the kiosk's parser
        takes it."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        if len(ocpi.encode()) > MAX_TARIFF_BYTES:
            return list_page(
                viewer,
                error=f"The tariff is larger than {MAX_TARIFF_BYTES} bytes.",
                text=ocpi[:2000],
                status_code=400,
            )
        try:
            document = parse_tariff(ocpi.encode())
        except TariffError as exc:
            return list_page(
                viewer, error=f"Not a valid OCPI tariff: {exc}", text=ocpi, status_code=400
            )
        canonical = json.dumps(json.loads(ocpi), sort_keys=True, separators=(",", ":"))
        save(
            engine,
            document.id,
            document.currency,
            canonical,
            at=frame.operators.clock(),
            audit=frame.operators.audit,
            actor=viewer.username,
        )
        return RedirectResponse(f"{TARIFFS}/{document.id}", status_code=303, headers=page_headers())

    @router.get(TARIFFS + "/{tariff_id}")
    def tariff_page(request: Request, tariff_id: TariffId) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        found = tariff(engine, tariff_id)
        if found is None:
            return frame.refuse(viewer, 404, "No such tariff", "No tariff has this id.")
        params = {
            k: request.query_params.get(k, "") for k in ("start", "tz", "kwh", "minutes", "idle")
        }
        bill: dict[str, Any] | None = None
        error = ""
        if request.query_params.get("preview"):
            try:
                bill = preview(found["ocpi"], params)
            except PreviewError as exc:
                error = str(exc)
        pretty = json.dumps(json.loads(found["ocpi"]), indent=2, sort_keys=True)
        return frame.render(
            viewer,
            "console/tariff.html",
            TARIFFS,
            {
                "t": found,
                "pretty": pretty,
                "params": params,
                "bill": bill,
                "error": error,
                "terminals": fleet(engine),
            },
            status_code=400 if error else 200,
        )

    @router.post(TARIFFS + "/{tariff_id}/stations")
    async def assign_tariff(request: Request, tariff_id: TariffId) -> Response:
        form = await request.form()
        viewer = await _change(frame, request, str(form.get("csrf", "")))
        if isinstance(viewer, Response):
            return viewer
        if tariff(engine, tariff_id) is None:
            return frame.refuse(viewer, 404, "No such tariff", "No tariff has this id.")
        known = {t.terminal_id for t in fleet(engine)}
        chosen = [str(v) for v in form.getlist("terminal")]
        unknown = [t for t in chosen if t not in known]
        if unknown or not chosen:
            return frame.refuse(viewer, 400, "Not assigned", "Choose one or more known stations.")
        assign(engine, tariff_id, chosen, audit=frame.operators.audit, actor=viewer.username)
        return RedirectResponse(f"{TARIFFS}/{tariff_id}", status_code=303, headers=page_headers())

    return router


async def _change(frame: ConsoleFrame, request: Request, csrf: str) -> Viewer | Response:
    return await run_in_threadpool(frame.change, request, csrf)
