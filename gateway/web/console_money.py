"""The console's money pages: what needs a person (open holds, steps with an unknown outcome,
flagged holds, change owed to drivers who paid up front and have not claimed it, a
reconciliation round on demand) and payments with their refunds.

A refund goes through the same idempotent frame and money step as the operator API
(`POST /operator/authorizations/{id}/refunds`): the form carries a key fixed when the page was
rendered, so a form sent twice refunds once. Only an admin may refund or run a reconciliation
round; both are written to the audit log with the operator's name (and the refund's reason).
A payment whose processor cannot send money back along it (`Capability.REFUND_TO_DESTINATION`:
Lightning) is refunded to an invoice from the payer's own wallet: the form asks for it, and
it is checked before anything moves (network, expiry, exactly the satoshis the amount bought
at the payment's rate, not paid already; `gateway.processors.lightning_change`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gateway import wire
from gateway.jobs.reconciler import Reconciler
from gateway.ledger import payouts
from gateway.ledger.console_views import find_payments, payment
from gateway.processors.port import (
    Capability,
    ChangeRefused,
    PaysChange,
    ProcessorUnreachable,
)
from gateway.processors.registry import UnknownProcessor
from gateway.web.console_frame import ConsoleFrame, Viewer
from gateway.web.templating import page_headers
from terminal.money import Money, minor_exponent

MONEY = "/console/money"
PAYMENTS = "/console/payments"
Refund = Callable[[str, wire.RefundRequest, str], JSONResponse]
PaymentId = Annotated[str, Path(pattern=wire.ID_PATTERN)]
KEY_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
MAX_DESTINATION = 2000  # `wire.RefundRequest.destination`


class AmountError(ValueError):
    """A refund amount the form cannot take; the message says why."""


def parse_amount(text: str, currency: str, most: int) -> int:
    """A refund amount typed in major units ("12.50") as minor units: positive, no more
    decimals than the currency has (ISO 4217), at most `most` (what is left to refund)."""
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise AmountError(f"{text!r} is not an amount") from None
    if not value.is_finite() or value <= 0:
        raise AmountError("the amount must be more than zero")
    minor = value.scaleb(minor_exponent(currency))
    if minor != minor.to_integral_value():
        raise AmountError(f"{currency} has {minor_exponent(currency)} decimals")
    if int(minor) > most:
        raise AmountError(f"at most {Money(most, currency).format()} is left to refund")
    return int(minor)


def money_routes(frame: ConsoleFrame, reconciler: Reconciler, refund: Refund) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    ledger = reconciler.payments.ledger
    processors = reconciler.payments.processors

    def payer(found: dict[str, object]) -> PaysChange | None:
        """The adapter that refunds this payment to the payer's own invoice, if it does."""
        try:
            adapter = processors.get(str(found["processor"]), str(found["merchant_account"]))
        except UnknownProcessor:
            return None
        if Capability.REFUND_TO_DESTINATION not in adapter.capabilities:
            return None
        return adapter if isinstance(adapter, PaysChange) else None

    @router.get(MONEY)
    def money_page(request: Request) -> Response:
        """Open holds, unknown outcomes and flagged holds, as the ledger has them now."""
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        return _money_page(viewer, None)

    def _money_page(viewer: Viewer, report: object) -> Response:
        now = ledger.clock()
        return frame.render(
            viewer,
            "console/money.html",
            MONEY,
            {
                "open": ledger.open_holds(),
                "unknown": ledger.unsettled_steps(now),
                "flagged": ledger.flagged(),
                "change": payouts.change_owed(ledger.engine),
                "report": report,
            },
        )

    @router.post(MONEY + "/reconcile")
    def reconcile(request: Request, csrf: str = Form("")) -> Response:
        """One reconciliation round, asking every open hold's processor (admins only)."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        report = reconciler.report()
        frame.operators.record(
            viewer.username,
            "reconcile",
            "ledger",
            {
                "resolved": report.resolved,
                "unknown": len(report.unknown),
                "stale": len(report.stale),
                "mismatched": len(report.mismatched),
            },
        )
        return _money_page(viewer, report)

    @router.get(PAYMENTS)
    def payments_page(request: Request, q: str = "") -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        found = find_payments(ledger.engine, q.strip()[:64])
        return frame.render(viewer, "console/payments.html", PAYMENTS, {"found": found, "q": q})

    def _payment_page(
        viewer: Viewer, aid: str, *, message: str = "", error: str = "", status_code: int = 200
    ) -> Response:
        found = payment(ledger.engine, aid)
        if found is None:
            return frame.refuse(viewer, 404, "No such payment", "No authorization has this id.")
        return frame.render(
            viewer,
            "console/payment.html",
            PAYMENTS,
            {
                "p": found,
                "to_invoice": payer(found) is not None,
                "key": secrets.token_urlsafe(24),
                "message": message,
                "error": error,
            },
            status_code=status_code,
        )

    @router.get(PAYMENTS + "/{aid}")
    def payment_page(request: Request, aid: PaymentId, refunded: int | None = None) -> Response:
        viewer = frame.page(request)
        if isinstance(viewer, Response):
            return viewer
        found = payment(ledger.engine, aid)
        message = ""
        if refunded is not None and found is not None:
            message = f"Refunded {Money(refunded, found['currency']).format()}."
        return _payment_page(viewer, aid, message=message)

    @router.post(PAYMENTS + "/{aid}/refunds")
    def refund_post(
        request: Request,
        aid: PaymentId,
        *,
        amount: str = Form(""),
        reason: str = Form(""),
        destination: str = Form(""),
        key: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        """Refund part or all of a captured payment (admins only), with a reason."""
        viewer = frame.change(request, csrf)
        if isinstance(viewer, Response):
            return viewer
        found = payment(ledger.engine, aid)
        if found is None:
            return frame.refuse(viewer, 404, "No such payment", "No authorization has this id.")
        reason = reason.strip()
        if not 1 <= len(reason) <= 200 or "\x00" in reason:
            return _payment_page(
                viewer, aid, error="Give a reason (up to 200 characters).", status_code=400
            )
        if not re.fullmatch(KEY_PATTERN, key):
            return _payment_page(
                viewer, aid, error="The form had no valid key. Try again.", status_code=400
            )
        try:
            minor = parse_amount(amount, found["currency"], found["refundable"])
        except AmountError as exc:
            return _payment_page(viewer, aid, error=f"Amount: {exc}.", status_code=400)
        to = payer(found)
        destination = "".join(destination.split())  # line breaks from copying an invoice
        if len(destination) > MAX_DESTINATION:
            return _payment_page(
                viewer, aid, error="Destination: too long for an invoice.", status_code=400
            )
        if to is not None:
            # Paid to the payer's own invoice: checked first, so a wrong one moves nothing.
            if not destination:
                return _payment_page(
                    viewer,
                    aid,
                    error="Destination: this payment is refunded to an invoice from the "
                    "payer's wallet; paste it.",
                    status_code=400,
                )
            try:
                to.quote_refund(
                    reference=str(found["processor_ref"]),
                    amount=Money(minor, found["currency"]),
                    destination=destination,
                )
            except ChangeRefused as exc:
                return _payment_page(
                    viewer, aid, error=f"Destination: {exc.message}.", status_code=400
                )
            except ProcessorUnreachable:
                return _payment_page(
                    viewer,
                    aid,
                    error="Destination: the processor cannot check the invoice now; try again.",
                    status_code=503,
                )
        elif destination:
            return _payment_page(
                viewer,
                aid,
                error="Destination: this payment is refunded to the card it came from; "
                "leave the destination empty.",
                status_code=400,
            )
        body = wire.RefundRequest(
            amount=wire.Amount(minor=minor, currency=found["currency"]),
            reason=reason,
            destination=destination or None,
        )
        answer = refund(aid, body, key)
        data = json.loads(bytes(answer.body))
        if answer.status_code != 200:
            message = data.get("error", {}).get("message", "refused")
            return _payment_page(
                viewer, aid, error=f"Refund refused: {message}.", status_code=answer.status_code
            )
        frame.operators.record(
            viewer.username,
            "payment.refund",
            aid,
            {"amount": minor, "currency": found["currency"], "reason": reason, "key": key},
        )
        return RedirectResponse(
            f"{PAYMENTS}/{aid}?refunded={minor}", status_code=303, headers=page_headers()
        )

    return router
