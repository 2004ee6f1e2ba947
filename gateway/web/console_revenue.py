"""The console's revenue page: a period's gross, VAT, net and refunds per currency, broken down
by site, station, processor, payment method and card brand, with a chart; also as JSON and CSV.
The page stays current by itself: it listens to `/console/revenue/events` (server-sent events),
which says when a new money movement is in the ledger, and fetches its figures again (htmx).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.ledger.revenue import DIMENSIONS, Report, last_movement, revenue
from gateway.web.console_frame import ConsoleFrame
from gateway.web.periods import NAMES, Period, PeriodError, parse_period
from gateway.web.templating import page_headers
from terminal.money import minor_exponent

REVENUE = "/console/revenue"
POLL_S = 1.0  # how often the event stream looks for new movements
STREAM_S = 300.0  # a stream ends after this; the browser's EventSource reconnects by itself


def _period(frame: ConsoleFrame, request: Request) -> Period:
    return parse_period(dict(request.query_params), frame.operators.clock())


def _major(minor: int, currency: str) -> str:
    """Minor units as a decimal string in major units (CSV: exact, no float)."""
    return str(Decimal(minor).scaleb(-minor_exponent(currency)))


def as_json(period: Period, found: Report) -> dict[str, Any]:
    return {
        "period": {
            **period.query(),
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
        },
        "totals": {c: f.as_dict() for c, f in found.totals.items()},
        "by": {
            d: [
                {"key": key, "currency": currency, **figures.as_dict()}
                for (key, currency), figures in groups.items()
            ]
            for d, groups in found.by.items()
        },
        "series": {
            c: [{"at": at.isoformat(), "gross": v} for at, v in points.items()]
            for c, points in found.series.items()
        },
    }


def _chart(period: Period, found: Report) -> dict[str, Any]:
    """What the chart script draws: per currency, bucket starts (Unix seconds) and gross in
    minor units with the currency's exponent (the script scales for display only)."""
    return {
        "hourly": period.hourly,
        "start": int(period.start.timestamp()),
        "end": int(period.end.timestamp()),
        "currencies": [
            {
                "currency": c,
                "exponent": minor_exponent(c),
                "x": [int(at.timestamp()) for at in points],
                "y": list(points.values()),
            }
            for c, points in found.series.items()
        ],
    }


def revenue_routes(frame: ConsoleFrame) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = frame.operators.engine

    def compute(period: Period) -> Report:
        days_in = None if period.hourly else period.zone.key
        return revenue(engine, period.start, period.end, period.buckets(), days_in=days_in)

    @router.get(REVENUE)
    def revenue_page(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        try:
            period = _period(frame, request)
        except PeriodError as exc:
            return frame.refuse(viewer, 400, "Not a period", str(exc))
        found = compute(period)
        context = {
            "period": period,
            "names": NAMES,
            "found": found,
            "dimensions": DIMENSIONS,
            "chart": _chart(period, found),
            "query": period.query(),
        }
        # htmx asks for the figures alone when the event stream says the ledger moved.
        template = (
            "console/revenue_figures.html"
            if request.headers.get("hx-request") == "true"
            else "console/revenue.html"
        )
        return frame.render(viewer, template, REVENUE, context)

    @router.get(REVENUE + ".json")
    def revenue_json(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        try:
            period = _period(frame, request)
        except PeriodError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=page_headers())
        return JSONResponse(as_json(period, compute(period)), headers=page_headers())

    @router.get(REVENUE + ".csv")
    def revenue_csv(request: Request) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        try:
            period = _period(frame, request)
        except PeriodError as exc:
            return frame.refuse(viewer, 400, "Not a period", str(exc))
        found = compute(period)
        out = io.StringIO()
        writer = csv.writer(out)
        columns = ["sessions", "gross", "vat", "net", "refunds", "after_refunds"]
        writer.writerow(["dimension", "key", "currency", *columns])
        for currency, figures in found.totals.items():
            row = figures.as_dict()
            writer.writerow(
                [
                    "total",
                    "",
                    currency,
                    row["sessions"],
                    *(_major(row[c], currency) for c in columns[1:]),
                ]
            )
        for dimension, groups in found.by.items():
            for (key, currency), figures in groups.items():
                row = figures.as_dict()
                writer.writerow(
                    [
                        dimension,
                        key,
                        currency,
                        row["sessions"],
                        *(_major(row[c], currency) for c in columns[1:]),
                    ]
                )
        name = f"revenue-{period.first.isoformat()}-{period.last.isoformat()}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers=page_headers({"Content-Disposition": f'attachment; filename="{name}"'}),
        )

    @router.get(REVENUE + "/events")
    async def revenue_events(request: Request) -> Response:
        viewer = await run_in_threadpool(frame.page, request)
        if isinstance(viewer, Response):
            return viewer

        async def stream() -> AsyncIterator[str]:
            seen = await run_in_threadpool(last_movement, engine)
            yield "retry: 2000\n\n"
            loop = asyncio.get_running_loop()
            until = loop.time() + STREAM_S
            while loop.time() < until and not await request.is_disconnected():
                await asyncio.sleep(POLL_S)
                latest = await run_in_threadpool(last_movement, engine)
                if latest != seen:
                    seen = latest
                    yield f"event: ledger\ndata: {latest}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers=page_headers({"X-Accel-Buffering": "no"}),
        )

    return router
