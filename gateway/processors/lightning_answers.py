"""The Lightning adapter's answers (`gateway.processors.lightning`), made from what LNbits
shows: an invoice as a hold, a capture or release recorded on it, a payout to the payer's
invoice, and the port's refusals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.processors.port import (
    ChangeRefused,
    ErrorCode,
    Outcome,
    PaymentState,
    PaymentStatus,
    ProcessorError,
    Result,
)
from terminal.money import Money

MSAT_PER_SAT = 1000


def invoiced(invoice: Mapping[str, Any], asked: Money) -> Result:
    """The answer to a hold: pending while the invoice waits for the payer; for the same key
    asked again, approved once it is paid and declined once it expired unpaid."""
    extra = invoice.get("extra") or {}
    raw = {
        "payment_hash": invoice.get("payment_hash"),
        "bolt11": invoice.get("bolt11") or invoice.get("payment_request"),
        "sats": int(invoice.get("amount", 0)) // MSAT_PER_SAT,
        "expiry": invoice.get("expiry"),
        "btc_price": extra.get("btc_price"),
        "rate_source": extra.get("rate_source"),
        "rate_at": extra.get("rate_at"),
    }
    reference = str(invoice["payment_hash"])
    if invoice.get("status") == "success":
        return Result(outcome=Outcome.APPROVED, amount=asked, reference=reference, raw=raw)
    if invoice.get("status") == "failed" or expired(invoice):
        error = ProcessorError(
            code=ErrorCode.CARD_DECLINED,
            message="the invoice expired unpaid",
            processor_code="failed" if invoice.get("status") == "failed" else "expired",
        )
        zero = Money.zero(asked.currency)
        return Result(
            outcome=Outcome.DECLINED, amount=zero, reference=reference, error=error, raw=raw
        )
    return Result(outcome=Outcome.PENDING, amount=asked, reference=reference, raw=raw)


def captured(now: PaymentStatus, reference: str) -> Result:
    assert now.captured is not None and now.held is not None
    owed = now.held - now.captured
    return Result(
        outcome=Outcome.APPROVED,
        amount=now.captured,
        reference=reference,
        raw={"owed_back_minor": owed.minor, "currency": owed.currency},
    )


def released(now: PaymentStatus, reference: str) -> Result:
    assert now.held is not None
    extra = now.raw.get("extra") or {}
    return Result(
        outcome=Outcome.APPROVED,
        amount=Money.zero(now.held.currency),
        reference=reference,
        raw={"owed_back_minor": int(extra.get("owed_back_minor", 0)), "state": now.state.value},
    )


def payout_result(row: Mapping[str, Any], reference: str) -> Result:
    extra = row.get("extra") or {}
    amount = Money(int(extra.get("fiat_minor", 0)), str(extra.get("fiat_currency", "EUR")))
    raw = {
        "payout_hash": row.get("payment_hash"),
        "preimage": row.get("preimage"),
        "sats": abs(int(row.get("amount", 0))) // MSAT_PER_SAT,
        "btc_price": extra.get("btc_price"),
        "status": row.get("status"),
    }
    if row.get("status") == "failed":
        error = ProcessorError(
            code=ErrorCode.PROCESSOR_UNAVAILABLE,
            message="the payment to the payer's invoice failed",
            processor_code="failed",
        )
        zero = Money.zero(amount.currency)
        return Result(
            outcome=Outcome.DECLINED, amount=zero, reference=reference, error=error, raw=raw
        )
    done = row.get("status") == "success"
    return Result(
        outcome=Outcome.APPROVED if done else Outcome.PENDING,
        amount=amount,
        reference=reference,
        raw=raw,
    )


def rate(now: PaymentStatus) -> Decimal:
    """The BTC price recorded on the paid invoice when the payer paid it."""
    try:
        price = Decimal(str((now.raw.get("extra") or {}).get("btc_price")))
    except InvalidOperation:
        raise ChangeRefused("mismatch", "the invoice recorded no rate") from None
    if not price.is_finite() or price <= 0:
        raise ChangeRefused("mismatch", "the invoice recorded no rate")
    return price


def expired(details: Mapping[str, Any]) -> bool:
    expiry = details.get("expiry")
    if not isinstance(expiry, str):
        return False
    try:
        when = datetime.fromisoformat(expiry)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # LNbits writes UTC, sometimes without the offset
    return when < datetime.now(UTC)


def refused(asked: Money, code: ErrorCode, message: str, *, processor_code: str = "") -> Result:
    return Result(
        outcome=Outcome.DECLINED,
        amount=Money.zero(asked.currency),
        error=ProcessorError(code=code, message=message, processor_code=processor_code),
    )


def no_answer(asked: Money, message: str) -> Result:
    return Result(
        outcome=Outcome.UNKNOWN,
        amount=Money.zero(asked.currency),
        error=ProcessorError(code=ErrorCode.TIMEOUT, message=message),
    )


def not_found(reference: str) -> PaymentStatus:
    zero = Money.zero("EUR")
    return PaymentStatus(
        state=PaymentState.NOT_FOUND, reference=reference, held=zero, captured=zero, refunded=zero
    )
