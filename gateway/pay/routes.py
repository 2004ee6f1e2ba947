"""The driver's payment pages (the QR code on the kiosk opens `/pay/{code}`): server-rendered,
mobile-first, working without JavaScript where the way to pay allows (forms post, status
pages refresh themselves), in the phone's language where the kiosk offers it.

- `GET /pay?code=…`: a code typed in (a kiosk with a character LCD shows `HOST/pay` and the
  code, no QR): its page.
- `GET /pay/{code}`: the station, the price as the kiosk shows it (AFIR: the price before the
  start), the amount held, and the ways to pay the operator's routing offers here
  (`gateway.pay.ways`). A used, unknown or expired code gets a page saying so, and nothing
  can be paid on it.
- `POST /pay/{code}`: pay (`Checkout`); then the session's page, or the form again with why.
- `POST /pay/{code}/card-setup`: for Stripe's card element, a SetupIntent's client secret
  (JSON); the only route a script calls.
- Adyen's card form posts only ciphertexts: the phone encrypts the card fields with the
  account's client-side encryption key (`static/adyen-card.js` over Adyen's CSE library,
  vendored in `gateway/web/static/vendor/`); the card in clear never reaches the gateway.
- `GET /pay/sessions/{id}`: the session paid for: a Lightning invoice to pay (a QR code and a
  `lightning:` link; the page refreshes until it is paid), starting, ready, not started (the
  hold released), charged with the receipt's link; a stop button while it runs.
- `POST /pay/sessions/{id}/stop`: the stop button (a command to the kiosk).
- `POST /pay/sessions/{id}/change`: a Lightning payment's change, to the driver's invoice
  (`gateway.pay.change`); the session's page shows what is owed, and then what was paid.

The session's id is its authorization id: 192 random bits, known only to the phone that paid.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.commands import NOT_STARTED, PENDING, STARTED, Commands
from gateway.ledger.schema import CAPTURED
from gateway.ledger.schema import PENDING as HOLD_PENDING
from gateway.pay.change import REASONS, change_of
from gateway.pay.checkout import Checkout, Outcome, Paid
from gateway.pay.qr import lightning_uri, qr_svg
from gateway.pay.ways import (
    ADYEN,
    INVOICE,
    STRIPE,
    STRIPE_WALLET,
    TEST_CARD,
    Way,
    ways_to_pay,
)
from gateway.pay.words import WORDS, choose
from gateway.payments.answers import Refusal, Unanswered
from gateway.processors import CardRef
from gateway.processors.adyen import AdyenProcessor
from gateway.processors.methods import LIGHTNING, WEB_CARD, WEB_METHODS, WEB_WALLET
from gateway.processors.port import ProcessorUnreachable
from gateway.processors.stripe import StripeProcessor
from gateway.web.templating import Pages
from terminal.money import Money

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CODE = re.compile(r"[A-Za-z0-9_-]{8,64}")
Code = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
SessionId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
TEST_CARDS = ("4242", "0002")  # the simulated processor's approve and decline cards
LATE_REASON = "paid_after_code_expired"
# What Adyen's CSE library makes of one field: "adyenjs_" + its version, "$", the AES key
# RSA-encrypted under the account's key, "$", the AES-CCM ciphertext, both Base64.
ADYEN_CIPHERTEXT = re.compile(r"adyenjs_[0-9_]{1,12}\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*")
ADYEN_FIELDS = (
    "encryptedCardNumber",
    "encryptedExpiryMonth",
    "encryptedExpiryYear",
    "encryptedSecurityCode",
)
ADYEN_FIELD_MAX = 4096  # one field's ciphertext: a 4096-bit key's block and a short JSON
# The page's own scripts, in static/, by the flow that runs them.
SCRIPTS = {STRIPE: "stripe-card.js", STRIPE_WALLET: "stripe-wallet.js", ADYEN: "adyen-card.js"}


def _headers(script_origins: Sequence[str] | None = None) -> dict[str, str]:
    """The pages' headers. Scripts run only where a way to pay needs one (None: none at all):
    ours, and a processor's own script where it needs one (stripe.js: that origin, for its
    script, its frames and its API)."""
    scripts = ""
    if script_origins is not None:
        origins = "".join(" " + origin for origin in script_origins)
        scripts = f"script-src 'self'{origins}; connect-src 'self'{origins}; "
        scripts += f"frame-src {origins.strip()}; " if origins else ""
    return {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # the code and the session id stay out of Referer
        "Content-Security-Policy": "default-src 'none'; style-src 'self'; "
        + scripts
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def pay_routes(checkout: Checkout, commands: Commands, pages: Pages) -> APIRouter:
    """The payment pages' routes, rendered through the app's one `Pages` environment
    (templates in `gateway/web/templates/pay/`, style in `static/pay.css`)."""
    router = APIRouter(include_in_schema=False)

    def render(
        name: str,
        context: Mapping[str, Any],
        status: int = 200,
        script_origins: Sequence[str] | None = None,
    ) -> HTMLResponse:
        return pages.render(
            f"pay/{name}",
            {"refresh": 0, **context},
            status_code=status,
            headers=_headers(script_origins),
        )

    codes = checkout.codes
    ledger = codes.ledger
    processors = checkout.payments.processors
    scripts = {name: (STATIC / name).read_text(encoding="utf-8") for name in SCRIPTS.values()}

    def message(lang: str, heading: str, text: str, status: int, tone: str = "") -> HTMLResponse:
        w = WORDS[lang]
        context = {"lang": lang, "heading": w[heading], "message": w[text], "tone": tone}
        return render("message.html", context, status)

    def offered(terminal_id: str, currency: str) -> list[Way]:
        return ways_to_pay(processors, terminal_id=terminal_id, currency=currency)

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
        ways = offered(found.terminal_id, offer.currency)
        stripes = {
            w.flow: w.processor
            for w in ways
            if w.flow in (STRIPE, STRIPE_WALLET) and isinstance(w.processor, StripeProcessor)
        }
        stripe = stripes.get(STRIPE) or stripes.get(STRIPE_WALLET)
        wallet = stripes.get(STRIPE_WALLET)
        adyen = next(
            (
                w.processor
                for w in ways
                if w.flow == ADYEN and isinstance(w.processor, AdyenProcessor)
            ),
            None,
        )
        context = {
            "lang": lang,
            "heading": w["title"],
            "w": w,
            "error": w[error] if error else "",
            "station": offer.station,
            "price": price,
            "hold": Money(offer.hold_minor, offer.currency).format(),
            "flows": [way.flow for way in ways],
            "action": f"/pay/{code}",
            "stripe_js": stripe.js_url if stripe else "",
            "stripe_key": stripe.publishable_key if stripe else "",
            "wallet": {
                "key": wallet.publishable_key,
                "country": wallet.country,
                "currency": offer.currency.lower(),
                "amount": offer.hold_minor,
                "label": f"{offer.station}: {w['hold']}",
            }
            if isinstance(wallet, StripeProcessor)
            else None,
            "scripts": [SCRIPTS[way.flow] for way in ways if way.flow in SCRIPTS],
            "adyen_key": (adyen.cse_public_key or "") if adyen else "",
            # Adyen refuses ciphertexts whose generation time is over a day old; the
            # gateway's clock, not the phone's, says when the page was made.
            "generation_time": _generation_time(ledger.clock()),
        }
        origins = [_origin(stripe.js_url)] if stripe else []
        scripted = stripe is not None or adyen is not None
        return render("pay.html", context, status, origins if scripted else None)

    @router.get("/pay/static/{name}", response_model=None)
    def script(name: str) -> Response:
        if name not in scripts:
            return Response(status_code=404)
        return Response(
            scripts[name],
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @router.get("/pay", response_model=None)
    def enter(request: Request, code: str = "") -> Response:
        """Where a code is typed in: a kiosk that cannot draw the QR code (a character LCD)
        shows `HOST/pay` and the code. A well-formed code goes to its page."""
        code = code.strip()
        if CODE.fullmatch(code):
            return RedirectResponse(f"/pay/{code}", status_code=303)
        lang = choose(request.headers.get("accept-language", ""), WORDS, "en")
        w = WORDS[lang]
        context = {
            "lang": lang,
            "w": w,
            "heading": w["enter_title"],
            "error": w["bad_code"] if code else "",
        }
        return render("enter.html", context, 400 if code else 200)

    @router.get("/pay/{code}", response_class=HTMLResponse)
    def show(code: Code, request: Request) -> HTMLResponse:
        return pay_page(request, code)

    @router.post("/pay/{code}/card-setup")
    def card_setup(code: Code) -> JSONResponse:
        found = codes.get(code)
        if found is None or not found.open_at(ledger.clock()):
            return JSONResponse({"error": "used_or_expired"}, status_code=410)
        way = next(
            (w for w in offered(found.terminal_id, found.offer.currency) if w.flow == STRIPE),
            None,
        )
        if way is None or not isinstance(way.processor, StripeProcessor):
            return JSONResponse({"error": "not_offered"}, status_code=404)
        key = "setup:" + secrets.token_urlsafe(18)
        try:
            secret = way.processor.card_setup(payment_id=code, key=key)
        except ProcessorUnreachable:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse({"client_secret": secret}, headers={"Cache-Control": "no-store"})

    @router.post("/pay/{code}", response_model=None)
    async def pay(code: Code, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        found = codes.get(code)
        if found is None:
            return pay_page(request, code)
        method = form.get("method", [""])[0]
        way = next(
            (w for w in offered(found.terminal_id, found.offer.currency) if w.method == method),
            None,
        )
        card = _card(way, form) if way is not None else None
        if card is None:
            return pay_page(request, code, status=400)
        outcome = await run_in_threadpool(checkout.pay, code, card)
        if outcome.paid is Paid.DECLINED:
            return pay_page(request, code, error="declined", status=402)
        if outcome.paid is Paid.UNUSABLE:
            return pay_page(request, code)
        return RedirectResponse(f"/pay/sessions/{outcome.authorization_id}", status_code=303)

    @router.get("/pay/sessions/{session_id}", response_class=HTMLResponse)
    async def session(session_id: SessionId, request: Request) -> HTMLResponse:
        return await session_page(session_id, request)

    @router.post("/pay/sessions/{session_id}/change", response_model=None)
    async def change(session_id: SessionId, request: Request) -> Response:
        """The driver's invoice for the change (`gateway.pay.change`)."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        invoice = form.get("invoice", [""])[0]
        try:
            await run_in_threadpool(checkout.payments.pay_change, session_id, invoice)
        except Refusal as exc:
            if exc.code == "unknown_authorization" or exc.transient:
                # No such session, or its change being paid right now: the page says which.
                return await session_page(session_id, request)
            return await session_page(session_id, request, REASONS.get(exc.code, "change_refused"))
        except Unanswered:
            return await session_page(session_id, request, "change_unanswered", 503)
        return RedirectResponse(f"/pay/sessions/{session_id}", status_code=303)

    async def session_page(
        session_id: str, request: Request, change_error: str = "", status: int | None = None
    ) -> HTMLResponse:
        row = ledger.fetch(session_id)
        header = request.headers.get("accept-language", "")
        if row is None or row.card_kind not in WEB_METHODS:
            return message(choose(header, WORDS, "en"), "unusable_title", "unusable", 404)
        found = codes.for_authorization(session_id)
        waiting: Outcome | None = None
        if row.status == HOLD_PENDING:
            # Not paid yet (an invoice): ask again; paid now, the kiosk is asked to start.
            waiting = await run_in_threadpool(checkout.settle, session_id)
            row = ledger.fetch(session_id)
            assert row is not None
        offered_languages: Iterable[str] = found.offer.price if found else WORDS
        lang = choose(header, offered_languages, found.offer.language if found else "en")
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
            "invoice": None,
            "paying": False,  # the payment itself is not settled yet (an invoice, a check)
            "change": await run_in_threadpool(change_of, checkout.payments, row),
            "change_action": f"/pay/sessions/{session_id}/change",
            "change_error": w[change_error] if change_error else "",
        }
        if row.status == CAPTURED:
            context |= {
                "heading": w["done_title"],
                "message": "",
                "captured": Money(int(row.amount_captured), row.currency).format(),
                "receipt_url": f"/receipts/{row.receipt_id}" if row.receipt_id else "",
            }
        elif row.status == HOLD_PENDING:
            pay = waiting.pay if waiting is not None else {}
            bolt11 = str(pay.get("bolt11") or "")
            if waiting is not None and waiting.paid is Paid.WAITING and bolt11:
                uri = lightning_uri(bolt11)
                context |= {
                    "paying": True,
                    "heading": w["invoice_title"],
                    "message": w["invoice"],
                    "refresh": 3,
                    "invoice": {
                        "qr": qr_svg(uri),
                        "uri": "lightning:" + bolt11,
                        "bolt11": bolt11,
                        "sats": f"{int(pay.get('sats') or 0):,}".replace(",", "\u202f"),
                        "hold": Money(int(row.amount_requested), row.currency).format(),
                        "rate": f"{pay.get('btc_price')} {row.currency}/BTC "
                        f"({pay.get('rate_source')})",
                    },
                }
            elif waiting is not None and waiting.paid is Paid.WAITING:
                # Another request is asking the processor right now: look again shortly.
                context |= {
                    "paying": True,
                    "heading": w["title"],
                    "message": w["checking"],
                    "refresh": 2,
                }
            else:
                context |= {"heading": w["unknown_title"], "message": w["unknown"], "refresh": 5}
        elif row.status != "approved":
            if row.void_reason == LATE_REASON:
                context |= {"heading": w["late_title"], "message": w["late"]}
            else:
                gone = state in (NOT_STARTED, "expired")
                text = "not_started" if gone else "released"
                title = "not_started_title" if gone else "done_title"
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
        elif row.op is not None:
            # Paid, no start sent, a step in flight (a late payment being released): look
            # again shortly.
            context |= {"paying": True, "heading": w["title"], "message": w["checking"]}
            context |= {"refresh": 2}
        else:
            context |= {"heading": w["not_started_title"], "message": w["not_started"]}
        if context["change"] is not None and context["change"].paying:
            context["refresh"] = 2
        code = status if status is not None else (400 if change_error else 200)
        return render("session.html", context, code)

    @router.post("/pay/sessions/{session_id}/stop")
    def stop(session_id: SessionId) -> RedirectResponse:
        commands.stop(session_id)  # nothing to stop (not started, settled): the page says so
        return RedirectResponse(f"/pay/sessions/{session_id}", status_code=303)

    return router


def _generation_time(now: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, the form Adyen's CSE library checks."""
    utc = now.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _card(way: Way, form: dict[str, list[str]]) -> CardRef | None:
    """What the chosen way to pay gives the processor adapter; None if the form is not
    well-formed."""
    if way.flow == TEST_CARD:
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
    if way.flow in (STRIPE, STRIPE_WALLET):
        # The PaymentMethod Stripe's card element left on the confirmed SetupIntent, or the
        # one the wallet's payment request gave.
        method = form.get("payment_method", [""])[0]
        if not method.startswith("pm_") or len(method) > 255 or not method.isascii():
            return None
        kind, brand = (WEB_CARD, "Card") if way.flow == STRIPE else (WEB_WALLET, "Wallet")
        return CardRef(kind=kind, token=method, brand=brand, last4="", expiry=None, payload={})
    if way.flow == ADYEN:
        # Only the CSE library's ciphertexts, as Adyen's Card component sends them; a field
        # in clear or anything else is refused before a hold is asked for.
        payload: dict[str, str] = {"type": "scheme"}
        for name in ADYEN_FIELDS:
            value = form.get(name, [""])[0]
            if len(value) > ADYEN_FIELD_MAX or not ADYEN_CIPHERTEXT.fullmatch(value):
                return None
            payload[name] = value
        holder = " ".join(form.get("holderName", [""])[0].split())[:80]
        if holder:
            payload["holderName"] = holder
        return CardRef(
            kind=WEB_CARD, token="", brand="Card", last4="", expiry=None, payload=payload
        )
    if way.flow == INVOICE:
        return CardRef(
            kind=LIGHTNING, token="", brand="Lightning", last4="", expiry=None, payload={}
        )
    return None
