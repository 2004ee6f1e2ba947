"""The simulated processor: durable books of its own, test cards, a webhook source.

It keeps what a real processor keeps on its side, in its own tables (`sim_payments`,
`sim_requests` in the gateway's database), so holds survive a gateway restart and any worker
can capture a hold another worker placed. Every call is idempotent by its key, as real
processors are. Its durability is the gateway's own: each call is one unit of work of the
engine's group commit (`gateway.ledger.batches`) — atomic, never inside a transaction of the
gateway's step (the step's claim is committed before the call, its record after), and
committed (fsynced on SQLite) before the call answers; it may share that commit with other
requests' units, as a real processor's database shares its own commits. A real processor's
durability costs the gateway a network round trip, not a commit of its database.

Test cards, by the last four digits of the card number (of the decrypted PAN when the gateway
decrypted the card data, else of the last four digits the terminal sent), as processors'
sandboxes do:
- ``0002`` declines (insufficient funds);
- ``0028`` approves half the amount asked for (partial approval);
- ``0119`` never answers and places nothing (the request is lost on the way);
- ``0135`` places the hold but its answer is lost (only `status` finds it);
- anything else approves in full.
`fail` switches the whole processor into an outage for tests: "unreachable" (nothing is done,
no answer) or "lost" (the call is done, its answer lost).
Webhooks are JSON signed with HMAC-SHA256 over the body (`Sim-Signature` header).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.batches import writer_for
from gateway.ledger.schema import sim_payments, sim_requests
from gateway.ledger.statements import Statement, columns
from gateway.ledger.store import insert_new, now
from gateway.processors import CardRef
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaymentState,
    PaymentStatus,
    ProcessorError,
    ProcessorUnreachable,
    Result,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money

DECLINE_LAST4 = "0002"
PARTIAL_LAST4 = "0028"
TIMEOUT_LAST4 = "0119"
LOST_ANSWER_LAST4 = "0135"
SIGNATURE_HEADER = "sim-signature"

Failure = Literal["unreachable", "lost"] | None

# Run on the driver's cursor (`gateway.ledger.statements`), given their values at execution.
_REPLAY = Statement(
    sa.select(sim_requests.c.answer).where(
        sim_requests.c.account == sa.bindparam("_account"),
        sim_requests.c.key == sa.bindparam("_key"),
    ),
    returns=columns(sim_requests, "answer"),
)
_PAYMENT = Statement(
    sa.select(sim_payments).where(
        sim_payments.c.account == sa.bindparam("_account"),
        sim_payments.c.reference == sa.bindparam("_reference"),
    ),
    returns=columns(sim_payments),
    name="Payment",
)
_PAYMENT_BY_ID = Statement(
    sa.select(sim_payments.c.reference).where(
        sim_payments.c.account == sa.bindparam("_account"),
        sim_payments.c.payment_id == sa.bindparam("_payment_id"),
    ),
    returns=columns(sim_payments, "reference"),
)
# A capture: the payment of this account and reference, still held, in this currency, with
# at least the amount held.
_CAPTURE = Statement(
    sa.update(sim_payments).where(
        sim_payments.c.account == sa.bindparam("_account"),
        sim_payments.c.reference == sa.bindparam("_reference"),
        sim_payments.c.state == sa.bindparam("_held"),
        sim_payments.c.currency == sa.bindparam("_currency"),
        sim_payments.c.held >= sa.bindparam("_amount"),
    ),
    keys=("state", "captured"),
)


@functools.cache
def _change_payment(keys: tuple[str, ...]) -> Statement:
    """UPDATE sim_payments SET `keys` WHERE reference = :_reference."""
    return Statement(
        sa.update(sim_payments).where(sim_payments.c.reference == sa.bindparam("_reference")),
        keys=keys,
    )


def _change(conn: Connection, reference: str, **values: Any) -> None:
    _change_payment(tuple(values)).execute(conn, {**values, "_reference": reference})


def _unknown(amount: Money) -> Result:
    return Result(
        outcome=Outcome.UNKNOWN,
        amount=Money(0, amount.currency),
        error=ProcessorError(code=ErrorCode.TIMEOUT, message="simulated processor timeout"),
    )


def _refused(amount: Money, code: ErrorCode, message: str, reference: str = "") -> Result:
    return Result(
        outcome=Outcome.DECLINED,
        amount=Money(0, amount.currency),
        reference=reference,
        error=ProcessorError(code=code, message=message, processor_code=code.value),
    )


def _dump(result: Result) -> str:
    error = result.error
    return json.dumps(
        {
            "outcome": result.outcome.value,
            "minor": result.amount.minor,
            "currency": result.amount.currency,
            "reference": result.reference,
            "error": None
            if error is None
            else {"code": error.code.value, "message": error.message},
        }
    )


def _load(text: str) -> Result:
    data = json.loads(text)
    error = data["error"]
    return Result(
        outcome=Outcome(data["outcome"]),
        amount=Money(data["minor"], data["currency"]),
        reference=data["reference"],
        error=None
        if error is None
        else ProcessorError(
            code=ErrorCode(error["code"]), message=error["message"], processor_code=error["code"]
        ),
    )


class SimulatedProcessor:
    """Implements `gateway.processors.port.Processor` over its own tables on `engine`."""

    name = "simulated"

    def __init__(
        self,
        engine: Engine,
        account: str = "default",
        *,
        increments: bool = True,
        webhook_secret: bytes = b"simulated-webhook-secret",
    ) -> None:
        self.engine = engine
        self.writer = writer_for(engine)
        self.account = account
        self.webhook_secret = webhook_secret
        self.fail: Failure = None
        self.calls = 0  # money calls that reached the processor (tests count them)
        self.supports_increment = increments

    @property
    def capabilities(self) -> frozenset[Capability]:
        caps = {
            Capability.PARTIAL_CAPTURE,
            Capability.REFUND,
            Capability.WEBHOOK,
            Capability.CARD_PRESENT,
            Capability.STATUS,
        }
        if self.supports_increment:
            caps.add(Capability.INCREMENT)
        return frozenset(caps)

    # -- the books --------------------------------------------------------------------------
    def _replay(self, conn: Connection, key: str) -> Result | None:
        row = _REPLAY.first(conn, {"_account": self.account, "_key": key})
        return None if row is None else _load(row.answer)

    def _remember(self, conn: Connection, key: str, operation: str, result: Result) -> Result:
        if not insert_new(
            conn,
            sim_requests,
            account=self.account,
            key=key,
            operation=operation,
            reference=result.reference,
            answer=_dump(result),
            at=now(),
        ):
            replayed = self._replay(conn, key)
            assert replayed is not None
            return replayed
        return result

    def _payment_id_used(self, conn: Connection, payment_id: str) -> bool:
        found = _PAYMENT_BY_ID.first(conn, {"_account": self.account, "_payment_id": payment_id})
        return found is not None

    def _payment(self, conn: Connection, reference: str) -> Any:
        """The payment's row (a named tuple of `sim_payments`), or None."""
        return _PAYMENT.first(conn, {"_account": self.account, "_reference": reference})

    def _call(
        self, key: str, operation: str, amount: Money, work: Any, *, repeatable: bool = True
    ) -> Result:
        """Run one idempotent call: do `work(conn)` and remember its answer under `key`, or
        answer what `key` was answered before; the outage modes lose the request or its
        answer. `repeatable`: doing `work` again for a key already answered changes nothing
        (its change is conditional on the payment's state, or keyed by its payment id), so
        the key is not looked up first: a repeated call's work is refused or changes nothing,
        and `_remember` finds the key and answers the first answer. That saves a statement
        per call, the money path's most frequent one. A refund adds to the sum refunded, so
        its key is looked up before anything is done."""
        if self.fail == "unreachable":
            return _unknown(amount)
        self.calls += 1
        # A refusal is an answer the books record, never a raise: no savepoint needed.
        with self.writer.unit(savepoint=False) as conn:
            result = None if repeatable else self._replay(conn, key)
            if result is None:
                result = work(conn)
                if result.outcome is not Outcome.UNKNOWN:
                    result = self._remember(conn, key, operation, result)
        return _unknown(amount) if self.fail == "lost" else result

    # -- the port ---------------------------------------------------------------------------
    def hold(self, *, key: str, payment_id: str, card: CardRef, amount: Money) -> Result:
        last4 = card.clear.pan[-4:] if card.clear is not None else card.last4
        if last4 == TIMEOUT_LAST4:
            return _unknown(amount)

        def work(conn: Connection) -> Result:
            if last4 == DECLINE_LAST4:
                if self._payment_id_used(conn, payment_id):
                    return _refused(amount, ErrorCode.INVALID_REQUEST, "payment id already used")
                return _refused(amount, ErrorCode.INSUFFICIENT_FUNDS, "insufficient funds")
            held = amount.minor // 2 if last4 == PARTIAL_LAST4 else amount.minor
            reference = "sim_" + uuid.uuid4().hex[:20]
            # The books' unique (account, payment_id) refuses a payment id used before: the
            # same answer as looking it up first, one statement less.
            if not insert_new(
                conn,
                sim_payments,
                reference=reference,
                account=self.account,
                payment_id=payment_id,
                state="held",
                currency=amount.currency,
                held=held,
                captured=0,
                refunded=0,
                created_at=now(),
            ):
                return _refused(amount, ErrorCode.INVALID_REQUEST, "payment id already used")
            return Result(
                outcome=Outcome.PARTIALLY_APPROVED if held < amount.minor else Outcome.APPROVED,
                amount=Money(held, amount.currency),
                reference=reference,
            )

        result = self._call(key, "hold", amount, work)
        if last4 == LOST_ANSWER_LAST4 and result.succeeded:
            return _unknown(amount)
        return result

    def increment(self, *, key: str, reference: str, amount: Money) -> Result:
        def work(conn: Connection) -> Result:
            payment = self._payment(conn, reference)
            if payment is None:
                return _refused(amount, ErrorCode.NOT_FOUND, "no such payment", reference)
            if not self.supports_increment:
                return _refused(amount, ErrorCode.UNSUPPORTED, "no incremental authorization")
            if payment.state != "held":
                return _refused(amount, ErrorCode.ALREADY_SETTLED, payment.state, reference)
            held = max(int(payment.held), amount.minor)
            _change(conn, reference, held=held)
            return Result(
                outcome=Outcome.APPROVED, amount=Money(held, amount.currency), reference=reference
            )

        return self._call(key, "increment", amount, work)

    def capture(self, *, key: str, reference: str, amount: Money) -> Result:
        def work(conn: Connection) -> Result:
            # The capture as one conditional update; only when it changes nothing is the
            # payment read to say why (the same checks, in the same order, as before it).
            values: dict[str, Any] = {"_account": self.account, "_reference": reference}
            values.update(_held="held", _currency=amount.currency, _amount=amount.minor)
            values.update(state="captured", captured=amount.minor)
            if _CAPTURE.rowcount(conn, values) == 1:
                return Result(outcome=Outcome.APPROVED, amount=amount, reference=reference)
            payment = self._payment(conn, reference)
            if payment is None:
                return _refused(amount, ErrorCode.NOT_FOUND, "no such payment", reference)
            if payment.state != "held":
                return _refused(amount, ErrorCode.ALREADY_SETTLED, payment.state, reference)
            return _refused(amount, ErrorCode.AMOUNT_INVALID, "above the hold", reference)

        return self._call(key, "capture", amount, work)

    def release(self, *, key: str, reference: str, amount: Money) -> Result:
        zero = Money(0, amount.currency)

        def work(conn: Connection) -> Result:
            payment = self._payment(conn, reference)
            if payment is None:
                return _refused(zero, ErrorCode.NOT_FOUND, "no such payment", reference)
            if payment.state != "held":
                return _refused(zero, ErrorCode.ALREADY_SETTLED, payment.state, reference)
            _change(conn, reference, state="released")
            return Result(outcome=Outcome.APPROVED, amount=zero, reference=reference)

        return self._call(key, "release", zero, work)

    def refund(
        self, *, key: str, reference: str, amount: Money, destination: str | None = None
    ) -> Result:
        if destination is not None:
            return _refused(amount, ErrorCode.INVALID_REQUEST, "refunds go back to the card")

        def work(conn: Connection) -> Result:
            payment = self._payment(conn, reference)
            if payment is None:
                return _refused(amount, ErrorCode.NOT_FOUND, "no such payment", reference)
            if payment.state != "captured":
                return _refused(amount, ErrorCode.INVALID_REQUEST, payment.state, reference)
            if amount.minor <= 0 or payment.refunded + amount.minor > payment.captured:
                return _refused(amount, ErrorCode.AMOUNT_INVALID, "above the capture", reference)
            _change(conn, reference, refunded=payment.refunded + amount.minor)
            return Result(outcome=Outcome.APPROVED, amount=amount, reference=reference)

        return self._call(key, "refund", amount, work, repeatable=False)

    def status(self, *, payment_id: str, reference: str | None) -> PaymentStatus:
        if self.fail == "unreachable":
            raise ProcessorUnreachable("simulated processor unreachable")
        where = (
            sim_payments.c.reference == reference
            if reference
            else sim_payments.c.payment_id == payment_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sim_payments).where(sim_payments.c.account == self.account, where)
            ).first()
        if row is None:
            return PaymentStatus(
                state=PaymentState.NOT_FOUND,
                reference=reference or "",
                held=None,
                captured=None,
                refunded=None,
            )
        return PaymentStatus(
            state={
                "held": PaymentState.HELD,
                "captured": PaymentState.CAPTURED,
                "released": PaymentState.RELEASED,
            }[row.state],
            reference=row.reference,
            held=Money(int(row.held), row.currency),
            captured=Money(int(row.captured), row.currency),
            refunded=Money(int(row.refunded), row.currency),
        )

    # -- webhooks ---------------------------------------------------------------------------
    def sign(self, body: bytes) -> str:
        """The signature header value for `body` (the webhook source's side)."""
        return hmac.new(self.webhook_secret, body, hashlib.sha256).hexdigest()

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.sign(body).encode()):
            raise WebhookRejected("signature does not match")
        try:
            data = json.loads(body)
            return WebhookEvent(
                event_id=str(data["id"]),
                kind=WebhookKind(data["type"]),
                reference=str(data["reference"]),
                payment_id=data.get("payment_id"),
                amount=Money(int(data["minor"]), str(data["currency"])),
                raw=data,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected(f"malformed notification: {exc}") from None

    # -- for tests and the ledger check -----------------------------------------------------
    def payments(self) -> list[dict[str, Any]]:
        """Every payment in the processor's books."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sim_payments)
                .where(sim_payments.c.account == self.account)
                .order_by(sim_payments.c.created_at)
            )
            return [dict(r._mapping) for r in rows]
