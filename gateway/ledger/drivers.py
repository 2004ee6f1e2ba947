"""Drivers' accounts, their one-time sign-in links, the cards and tokens they linked, and the
read-only queries of their pages. Every query of a driver's data is filtered by the driver's
linked tokens here, so a page cannot show another driver's session by taking an id from the
address bar."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.invoice_schema import invoices
from gateway.ledger.schema import CAPTURED, authorizations
from gateway.ledger.store import aware, insert_new
from gateway.ledger.web_schema import driver_cards, drivers, sign_in_links

LINK_LIFETIME = timedelta(minutes=15)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Drivers:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    # -- sign-in links ----------------------------------------------------------------------
    def new_link(self, email: str, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(sign_in_links).values(
                    token_sha256=digest(token), email=email, expires_at=self.clock() + LINK_LIFETIME
                )
            )

    def use_link(self, token: str) -> int | None:
        """Spend a sign-in link: the driver's id (the account is made at its first sign-in),
        or None if the link is unknown, used or expired. A link works once, even when two
        requests race (the compare-and-set on `used_at`)."""
        stamp = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.update(sign_in_links)
                .where(
                    sign_in_links.c.token_sha256 == digest(token),
                    sign_in_links.c.used_at.is_(None),
                    sign_in_links.c.expires_at > stamp,
                )
                .values(used_at=stamp)
                .returning(sign_in_links.c.email)
            ).first()
            if row is None:
                return None
            insert_new(conn, drivers, email=row.email, created_at=stamp)
            return int(
                conn.execute(
                    sa.select(drivers.c.id).where(drivers.c.email == row.email)
                ).scalar_one()
            )

    def email(self, driver_id: int) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(drivers.c.email).where(drivers.c.id == driver_id)
            ).scalar()
        return None if found is None else str(found)

    # -- cards and tokens -------------------------------------------------------------------
    def find_for_proof(self, receipt_id: str) -> Any:
        """The captured authorization a receipt id names (for a driver's proof of a card)."""
        a = authorizations
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(
                    a.c.card_token, a.c.card_kind, a.c.card_last4, a.c.amount_captured, a.c.currency
                ).where(a.c.receipt_id == receipt_id, a.c.status == CAPTURED)
            ).first()

    def link(self, driver_id: int, card_token: str, kind: str, label: str) -> bool:
        """Link a card or token to the driver; False if it belongs to someone already."""
        with self.engine.begin() as conn:
            if insert_new(
                conn,
                driver_cards,
                card_token=card_token,
                driver_id=driver_id,
                kind=kind,
                label=label,
                created_at=self.clock(),
            ):
                return True
            owner = conn.execute(
                sa.select(driver_cards.c.driver_id).where(driver_cards.c.card_token == card_token)
            ).scalar()
            return owner == driver_id

    def cards(self, driver_id: int) -> list[dict[str, Any]]:
        a, c = authorizations, driver_cards
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    c.c.card_token,
                    c.c.kind,
                    c.c.label,
                    sa.func.max(a.c.card_brand).label("brand"),
                    sa.func.max(a.c.card_last4).label("last4"),
                )
                .select_from(c.outerjoin(a, a.c.card_token == c.c.card_token))
                .where(c.c.driver_id == driver_id)
                .group_by(c.c.card_token, c.c.kind, c.c.label)
                .order_by(c.c.kind, c.c.label, c.c.card_token)
            ).all()
        return [dict(r._mapping) for r in rows]

    def owns(self, driver_id: int, card_token: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(driver_cards.c.driver_id).where(
                        driver_cards.c.card_token == card_token,
                        driver_cards.c.driver_id == driver_id,
                    )
                ).first()
                is not None
            )

    def rename(self, driver_id: int, card_token: str, label: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(driver_cards)
                .where(
                    driver_cards.c.card_token == card_token, driver_cards.c.driver_id == driver_id
                )
                .values(label=label)
            )
            return bool(result.rowcount == 1)

    # -- history ----------------------------------------------------------------------------
    def history(
        self,
        driver_id: int,
        *,
        first: date | None = None,
        last: date | None = None,
        station: str = "",
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """The driver's sessions (authorizations of linked cards and tokens), newest first,
        filtered by UTC day and terminal id."""
        a = authorizations
        mine = sa.select(driver_cards.c.card_token).where(driver_cards.c.driver_id == driver_id)
        query = sa.select(
            a.c.id,
            a.c.terminal_id,
            a.c.status,
            a.c.currency,
            a.c.amount_captured,
            a.c.amount_refunded,
            a.c.energy_wh,
            a.c.receipt_id,
            a.c.card_brand,
            a.c.card_last4,
            a.c.created_at,
        ).where(a.c.card_token.in_(mine))
        if first is not None:
            query = query.where(a.c.created_at >= datetime.combine(first, time(), UTC))
        if last is not None:
            query = query.where(
                a.c.created_at < datetime.combine(last + timedelta(days=1), time(), UTC)
            )
        if station:
            query = query.where(a.c.terminal_id == station)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(a.c.created_at.desc(), a.c.id).limit(limit)).all()
        return [{**dict(r._mapping), "created_at": aware(r.created_at)} for r in rows]

    def session(self, driver_id: int, authorization_id: str) -> dict[str, Any] | None:
        """One of the driver's sessions with its receipt; None if it is not theirs (or does
        not exist: the two are answered alike)."""
        a = authorizations
        mine = sa.select(driver_cards.c.card_token).where(driver_cards.c.driver_id == driver_id)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(a).where(a.c.id == authorization_id, a.c.card_token.in_(mine))
            ).first()
        if row is None:
            return None
        data = {
            k: v for k, v in row._mapping.items() if k not in ("card_token", "op_detail", "op_key")
        }
        data["receipt"] = json.loads(row.receipt) if row.receipt else None
        data["created_at"] = aware(row.created_at)
        return data

    # -- invoices ---------------------------------------------------------------------------
    def invoices(self, driver_id: int, authorization_ids: list[str]) -> dict[str, list[Any]]:
        """The invoices of those of `authorization_ids` that are the driver's sessions, per
        session, newest first (a superseded invoice stays listed, marked)."""
        a, i = authorizations, invoices
        mine = sa.select(driver_cards.c.card_token).where(driver_cards.c.driver_id == driver_id)
        found: dict[str, list[Any]] = {}
        if not authorization_ids:
            return found
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(i.c.id, i.c.authorization_id, i.c.cpo_id, i.c.number, i.c.kind)
                .add_columns(i.c.superseded_by)
                .select_from(i.join(a, a.c.id == i.c.authorization_id))
                .where(i.c.authorization_id.in_(authorization_ids), a.c.card_token.in_(mine))
                .order_by(i.c.id.desc())
            ).all()
        for row in rows:
            found.setdefault(row.authorization_id, []).append(row)
        return found

    def owns_invoice(self, driver_id: int, invoice_id: int) -> bool:
        """Whether the invoice is of one of the driver's sessions (another driver's invoice
        and a missing one are alike: False)."""
        a, i = authorizations, invoices
        mine = sa.select(driver_cards.c.card_token).where(driver_cards.c.driver_id == driver_id)
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(i.c.id)
                .select_from(i.join(a, a.c.id == i.c.authorization_id))
                .where(i.c.id == invoice_id, a.c.card_token.in_(mine))
            ).first()
        return found is not None
