"""The driver's payment pages (the QR code on the kiosk opens `/pay/{code}`): server-rendered,
mobile-first, working without JavaScript (forms post, status pages refresh themselves), in
the phone's language where the kiosk offers it.

- `GET /pay/{code}`: the station, the price as the kiosk shows it (AFIR: the price before the
  start), the amount held, and the ways to pay the operator enabled. A used, unknown or
  expired code gets a page saying so, and nothing can be paid on it.
- `POST /pay/{code}`: pay (`Checkout`); then the session's page, or the form again with why.
- `GET /pay/sessions/{id}`: the session paid for: starting, ready, not started (the hold
  released), charged with the receipt's link; a stop button while it runs.
- `POST /pay/sessions/{id}/stop`: the stop button (a command to the kiosk).

The session's id is its authorization id: 192 random bits, known only to the phone that paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from gateway.commands import NOT_STARTED, PENDING, STARTED, Commands
from gateway.ledger.schema import CAPTURED
from gateway.pay.checkout import Checkout, Paid
from gateway.pay.words import WORDS, choose
from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD, WEB_METHODS
from terminal.money import Money

TEMPLATES = Path(__file__).resolve().parent / "templates"
Code = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
SessionId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
TEST_CARDS = ("4242", "0002")  # the simulated processor's approve and decline cards
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the code and the session id stay out of Referer
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class PayPages:
    """Renders the payment pages (one Jinja2 environment per app, autoescaped)."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
        body = self.env.get_template(name).render({"refresh": 0, **context})
        return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def pay_routes(
    checkout: Checkout,
    commands: Commands,
    *,
    methods: tuple[str, ...] = ("sim_card",),
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    pages = PayPages()
    codes = checkout.codes
    ledger = codes.ledger

    def message(lang: str, heading: str, text: str, status: int, tone: str = "") -> HTMLResponse:
        w = WORDS[lang]
        context = {"lang": lang, "heading": w[heading], "message": w[text], "tone": tone}
        return pages.render("message.html", context, status)

    def pay_page(request: Request, code: str, error: str = "", status: int = 200) -> HTMLResponse:
        found = codes.get(code)
        header = request.headers.get("accept-language", "")
        if found is None or not found.open_at(ledger.clock()):
            lang = choose(header, WORDS, found.offer.language if found else "en")
            return message(lang, "unusable_title", "unusable", 410 if found else 404, "error")
        offer = found.offer
        lang = choose(header, offer.price, offer.language)
        w = WORDS[lang]
        price = offer.price.get(lang) or offer.price.get(offer.language) or []
        context = {
            "lang": lang,
            "heading": w["title"],
            "w": w,
            "error": w[error] if error else "",
            "station": offer.station,
            "price": price,
            "hold": Money(offer.hold_minor, offer.currency).format(),
            "methods": methods,
            "action": f"/pay/{code}",
        }
        return pages.render("pay.html", context, status)

    @router.get("/pay/{code}", response_class=HTMLResponse)
    def show(code: Code, request: Request) -> HTMLResponse:
        return pay_page(request, code)

    @router.post("/pay/{code}", response_model=None)
    async def pay(code: Code, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        method = form.get("method", [""])[0]
        if method not in methods:
            return pay_page(request, code, status=400)
        card = _card(method, form)
        if card is None:
            return pay_page(request, code, status=400)
        outcome = await run_in_threadpool(checkout.pay, code, card)
        if outcome.paid is Paid.DECLINED:
            return pay_page(request, code, error="declined", status=402)
        if outcome.paid is Paid.UNUSABLE:
            return pay_page(request, code)
        return RedirectResponse(f"/pay/sessions/{outcome.authorization_id}", status_code=303)

    @router.get("/pay/sessions/{session_id}", response_class=HTMLResponse)
    def session(session_id: SessionId, request: Request) -> HTMLResponse:
        row = ledger.fetch(session_id)
        header = request.headers.get("accept-language", "")
        if row is None or row.card_kind not in WEB_METHODS:
            return message(choose(header, WORDS, "en"), "unusable_title", "unusable", 404)
        found = codes.for_authorization(session_id)
        offered: Iterable[str] = found.offer.price if found else WORDS
        lang = choose(header, offered, found.offer.language if found else "en")
        w = WORDS[lang]
        state = commands.state_of(session_id)
        context: dict[str, Any] = {
            "lang": lang,
            "w": w,
            "station": found.offer.station if found else "",
            "captured": "",
            "receipt_url": "",
            "can_stop": False,
            "stop_action": f"/pay/sessions/{session_id}/stop",
            "refresh": 0,
        }
        if row.status == CAPTURED:
            context |= {
                "heading": w["done_title"],
                "message": "",
                "captured": Money(int(row.amount_captured), row.currency).format(),
                "receipt_url": f"/receipts/{row.receipt_id}" if row.receipt_id else "",
            }
        elif row.status != "approved":
            text = "not_started" if state in (NOT_STARTED, "expired") else "released"
            title = "not_started_title" if state in (NOT_STARTED, "expired") else "done_title"
            context |= {"heading": w[title], "message": w[text]}
        elif state == PENDING:
            context |= {"heading": w["waiting_title"], "message": w["waiting"], "refresh": 3}
        elif state == STARTED:
            stopping = commands.stop_requested(session_id)
            context |= {
                "heading": w["started_title"],
                "message": w["stopping"] if stopping else w["started"],
                "can_stop": not stopping,
                "refresh": 5,
            }
        else:
            context |= {"heading": w["not_started_title"], "message": w["not_started"]}
        return pages.render("session.html", context)

    @router.post("/pay/sessions/{session_id}/stop")
    def stop(session_id: SessionId) -> RedirectResponse:
        commands.stop(session_id)  # nothing to stop (not started, settled): the page says so
        return RedirectResponse(f"/pay/sessions/{session_id}", status_code=303)

    return router


def _card(method: str, form: dict[str, list[str]]) -> CardRef | None:
    """What the chosen way to pay gives the processor adapter; None if the form is not
    well-formed."""
    if method == "sim_card":
        last4 = form.get("test_card", [""])[0]
        if last4 not in TEST_CARDS:
            return None
        return CardRef(
            kind=WEB_CARD,
            token=f"sim_web_{last4}",
            brand="Test card",
            last4=last4,
            expiry=None,
            payload={},
        )
    return None
