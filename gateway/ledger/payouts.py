"""A prepayment's change and the payouts to a payer's own wallet, as the ledger keeps them.

A Lightning payment is made in full up front. When it is captured for less, or released, the
part not captured is owed back to the payer: a `change_owed` movement, in the capture's or
release's own transaction (`gateway.payments`). When the payer gives an invoice for it and it
is paid, a `change_paid` movement, with a `payouts` row holding the proof (payment hash and
preimage), the satoshis and the rate. What is owed now is the difference; the console lists
every payment with change still owed ("money that needs a person"). A refund paid to the
payer's invoice (`refund` with a destination) gets a `payouts` row too.

Neither movement is revenue: the change was never captured, so the revenue rollup (captures
and refunds, `gateway.ledger.rollup`) leaves both out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.schema import authorizations, movements, payouts
from gateway.ledger.store import aware

OWED = "change_owed"
PAID = "change_paid"


def owed(conn: Connection, authorization_id: str) -> int:
    """The change owed on an authorization now, in minor units (0 if none)."""
    m = movements.c
    signed = sa.case((m.kind == OWED, m.amount), else_=-m.amount)
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(signed), 0)).where(
            m.authorization_id == authorization_id, m.kind.in_((OWED, PAID))
        )
    ).scalar_one()
    return int(total)


def record(
    conn: Connection,
    *,
    authorization_id: str,
    step_key: str,
    kind: str,
    amount: int,
    currency: str,
    raw: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """Keep a payout's proof, in the transaction that records its movement."""
    values = {
        "authorization_id": authorization_id,
        "step_key": step_key,
        "kind": kind,
        "amount": amount,
        "currency": currency,
        "sats": int(raw.get("sats") or 0),
        "btc_price": str(raw.get("btc_price") or ""),
        "payment_hash": str(raw.get("payout_hash") or ""),
        "preimage": str(raw.get("preimage") or ""),
        "at": at,
    }
    conn.execute(sa.insert(payouts).values(**values))
    return values


def latest(conn: Connection, authorization_id: str, kind: str) -> dict[str, Any] | None:
    """The newest payout of `kind` on an authorization, or None."""
    row = conn.execute(
        sa.select(payouts)
        .where(payouts.c.authorization_id == authorization_id, payouts.c.kind == kind)
        .order_by(payouts.c.at.desc())
        .limit(1)
    ).first()
    return None if row is None else {**row._mapping, "at": aware(row.at)}


def of_step(conn: Connection, authorization_id: str, step_key: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(payouts).where(
            payouts.c.authorization_id == authorization_id, payouts.c.step_key == step_key
        )
    ).first()
    return None if row is None else {**row._mapping, "at": aware(row.at)}


def change_owed(engine: Engine) -> list[dict[str, Any]]:
    """Every authorization with change still owed to its payer, oldest first: the amount,
    since when, and where the payment lives (for the console)."""
    m, a = movements.c, authorizations.c
    signed = sa.case((m.kind == OWED, m.amount), else_=-m.amount)
    owed_now = sa.func.sum(signed).label("owed")
    since = sa.func.min(m.at).label("since")
    query = (
        sa.select(
            m.authorization_id,
            m.currency,
            owed_now,
            since,
            a.terminal_id,
            a.status,
            a.processor,
            a.merchant_account,
        )
        .select_from(movements.join(authorizations, a.id == m.authorization_id))
        .where(m.kind.in_((OWED, PAID)))
        .group_by(
            m.authorization_id,
            m.currency,
            a.terminal_id,
            a.status,
            a.processor,
            a.merchant_account,
        )
        .having(sa.func.sum(signed) > 0)
        .order_by(since, m.authorization_id)
    )
    with engine.connect() as conn:
        return [{**r._mapping, "since": aware(r.since)} for r in conn.execute(query)]
