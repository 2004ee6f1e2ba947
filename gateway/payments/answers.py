"""What a money step answers: its refusals (`Refusal`, `Unanswered`, the body of an error)
and its answers read from the authorization's state, the same for a first request, its retry
and a step someone else finished."""

from __future__ import annotations

from typing import Any

from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import APPROVED, CAPTURED, VOIDED
from gateway.ledger.store import AuthorizationRow


class Refusal(Exception):
    """A definite refusal, answered with a 4xx. A `transient` one (another step is in flight)
    is not stored for the idempotency key: the retry is worked again."""

    def __init__(self, status: int, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient


class Unanswered(Exception):
    """The processor gave no answer: the outcome is unknown for now (504, retryable)."""


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _amount(minor: int, currency: str) -> dict[str, Any]:
    return {"minor": minor, "currency": currency}


def in_progress() -> Refusal:
    return Refusal(
        409, "in_progress", "another step on this authorization is under way", transient=True
    )


class Answers:
    """The answers of the steps, from the authorization's row."""

    @staticmethod
    def authorization_answer(row: AuthorizationRow) -> StoredAnswer:
        if row.status in (APPROVED, CAPTURED) or (
            row.status == VOIDED and row.amount_authorized is not None
        ):
            return StoredAnswer(
                status_code=200,
                body={
                    "authorization_id": row.id,
                    "status": "approved",
                    "amount_authorized": _amount(int(row.amount_authorized), row.currency),
                },
            )
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "declined",
                "decline_reason": row.decline_reason or "declined",
            },
        )

    @staticmethod
    def _captured_answer(row: AuthorizationRow) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "captured",
                "amount_captured": _amount(int(row.amount_captured), row.currency),
            },
        )

    @staticmethod
    def _refunded_answer(row: AuthorizationRow, amount: int) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": row.id,
                "status": "refunded",
                "refund": _amount(amount, row.currency),
                "amount_refunded": _amount(int(row.amount_refunded), row.currency),
                "amount_captured": _amount(int(row.amount_captured), row.currency),
            },
        )

    @staticmethod
    def _change_answer(payout: dict[str, Any]) -> StoredAnswer:
        return StoredAnswer(
            status_code=200,
            body={
                "authorization_id": payout["authorization_id"],
                "status": "change_paid",
                "change": _amount(int(payout["amount"]), payout["currency"]),
                "sats": int(payout["sats"]),
                "payment_hash": payout["payment_hash"],
                "preimage": payout["preimage"],
            },
        )

    @staticmethod
    def _voided_answer(authorization_id: str) -> StoredAnswer:
        return StoredAnswer(
            status_code=200, body={"authorization_id": authorization_id, "status": "voided"}
        )
