"""The gateway's ledger: authorizations, their money movements, receipts and idempotency.

SQLAlchemy Core over SQLite by default (PostgreSQL by URL). Every state change of an
authorization is one transaction that also appends a row to `movements`, so the ledger can be
audited: each hold ends in exactly one capture or one release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

authorizations = sa.Table(
    "authorizations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # chosen by the terminal (session id)
    sa.Column("terminal_id", sa.String(64), nullable=False),
    # pending | approved | declined | failed | captured | voided
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_requested", sa.BigInteger, nullable=False),
    sa.Column("amount_authorized", sa.BigInteger),
    sa.Column("amount_captured", sa.BigInteger),
    sa.Column("card_kind", sa.String(16), nullable=False),
    sa.Column("card_token", sa.String(64), nullable=False),
    sa.Column("card_brand", sa.String(32), nullable=False),
    sa.Column("card_last4", sa.String(4), nullable=False),
    sa.Column("processor_ref", sa.String(64)),
    sa.Column("decline_reason", sa.String(64)),
    sa.Column("energy_wh", sa.BigInteger),
    sa.Column("receipt_id", sa.String(32), unique=True),
    sa.Column("receipt", sa.Text),
    sa.Column("void_reason", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

movements = sa.Table(
    "movements",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("authorization_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # hold | increment | capture | release
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("terminal_id", "key", name="events_terminal_key"),
)

# Signed meter readings (OCMF) as the terminal sent them, kept with their authorization so the
# capture can be checked against them (the driver's proof under calibration law). One row per
# distinct reading: a batch retried with other rows in it adds none twice.
meter_readings = sa.Table(
    "meter_readings",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("authorization_id", sa.String(64), nullable=False, index=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # begin | charging | end
    sa.Column("ocmf", sa.Text, nullable=False),
    sa.Column("ocmf_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# The terminals' local authorization list ("allow": ID tokens that may start while the
# gateway is unreachable) and deny list ("deny": tokens refused, online and offline).
token_lists = sa.Table(
    "token_lists",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("list", sa.String(8), nullable=False),  # allow | deny
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Every KSN of a card-data blob the gateway accepted, with the authorization that used it: a
# DUKPT device never repeats a KSN (ANSI X9.24-3-2017), so a second use is a replay.
seen_ksns = sa.Table(
    "seen_ksns",
    metadata,
    sa.Column("ksn", sa.String(24), primary_key=True),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

IDEMPOTENCY_RETENTION = timedelta(hours=48)  # keys are kept at least 24 h (we keep 48 h)


def now() -> datetime:
    return datetime.now(UTC)


def open_engine(url: str) -> Engine:
    """Create the engine and the schema. SQLite gets WAL and synchronous=FULL."""
    engine = sa.create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    metadata.create_all(engine)
    return engine


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAnswer:
    status_code: int
    body: dict[str, Any]


class Ledger:
    """Operations on the ledger; each method is one transaction.

    `clock` stamps idempotency keys and decides their expiry (tests pass a fake one)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = now) -> None:
        self.engine = engine
        self.clock = clock

    # -- idempotency ------------------------------------------------------------------------
    def stored_answer(self, conn: Connection, key: str) -> tuple[str, str, StoredAnswer] | None:
        row = conn.execute(sa.select(idempotency).where(idempotency.c.key == key)).first()
        if row is None:
            return None
        return (
            row.endpoint,
            row.body_sha256,
            StoredAnswer(status_code=row.status_code, body=json.loads(row.response)),
        )

    def store_answer(
        self, conn: Connection, key: str, endpoint: str, body_sha: str, answer: StoredAnswer
    ) -> None:
        conn.execute(
            sa.insert(idempotency).values(
                key=key,
                endpoint=endpoint,
                body_sha256=body_sha,
                status_code=answer.status_code,
                response=json.dumps(answer.body),
                created_at=self.clock(),
            )
        )

    def expire_keys(self) -> int:
        """Forget idempotency keys older than `IDEMPOTENCY_RETENTION`; how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.delete(idempotency).where(
                    idempotency.c.created_at < self.clock() - IDEMPOTENCY_RETENTION
                )
            )
            return int(result.rowcount or 0)

    # -- authorizations ---------------------------------------------------------------------
    def get(self, conn: Connection, authorization_id: str) -> sa.Row[Any] | None:
        return conn.execute(
            sa.select(authorizations).where(authorizations.c.id == authorization_id)
        ).first()

    def receipt_owner(self, conn: Connection, receipt_id: str) -> str | None:
        """The authorization a receipt id already belongs to, if any."""
        row = conn.execute(
            sa.select(authorizations.c.id).where(authorizations.c.receipt_id == receipt_id)
        ).first()
        return None if row is None else str(row.id)

    def insert(self, conn: Connection, **values: Any) -> None:
        stamp = now()
        conn.execute(sa.insert(authorizations).values(created_at=stamp, updated_at=stamp, **values))

    def update(self, conn: Connection, authorization_id: str, **values: Any) -> None:
        conn.execute(
            sa.update(authorizations)
            .where(authorizations.c.id == authorization_id)
            .values(updated_at=now(), **values)
        )

    def move(
        self, conn: Connection, authorization_id: str, kind: str, amount: int, cur: str
    ) -> None:
        conn.execute(
            sa.insert(movements).values(
                authorization_id=authorization_id, kind=kind, amount=amount, currency=cur, at=now()
            )
        )

    def add_events(
        self, conn: Connection, terminal_id: str, items: list[tuple[str, str, str]]
    ) -> int:
        """Store (key, kind, detail) events; a key already stored for the terminal is skipped.
        Returns how many were new."""
        added = 0
        for key, kind, detail in items:
            seen = conn.execute(
                sa.select(events.c.seq).where(
                    events.c.terminal_id == terminal_id, events.c.key == key
                )
            ).first()
            if seen is None:
                conn.execute(
                    sa.insert(events).values(
                        terminal_id=terminal_id, key=key, kind=kind, detail=detail, at=now()
                    )
                )
                added += 1
        return added

    def add_readings(
        self, conn: Connection, terminal_id: str, items: list[tuple[str, str, str]]
    ) -> int:
        """Store (authorization id, kind, OCMF string) readings; one already stored is skipped.
        Returns how many were new."""
        added = 0
        for authorization_id, kind, text in items:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            seen = conn.execute(
                sa.select(meter_readings.c.seq).where(meter_readings.c.ocmf_sha256 == digest)
            ).first()
            if seen is not None:
                continue
            conn.execute(
                sa.insert(meter_readings).values(
                    authorization_id=authorization_id,
                    terminal_id=terminal_id,
                    kind=kind,
                    ocmf=text,
                    ocmf_sha256=digest,
                    received_at=now(),
                )
            )
            added += 1
        return added

    def put_token(self, token: str, list_name: str | None) -> None:
        """Put a token on the "allow" or "deny" list, or take it off (None)."""
        if list_name not in (None, "allow", "deny"):
            raise ValueError(f"list {list_name!r}")
        with self.engine.begin() as conn:
            conn.execute(sa.delete(token_lists).where(token_lists.c.token == token))
            if list_name is not None:
                conn.execute(sa.insert(token_lists).values(token=token, list=list_name, at=now()))

    def is_denied(self, conn: Connection, token: str) -> bool:
        row = conn.execute(
            sa.select(token_lists.c.list).where(token_lists.c.token == token)
        ).first()
        return row is not None and row.list == "deny"

    def token_lists(self) -> tuple[list[str], list[str]]:
        """(authorization list, deny list), each sorted."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(token_lists).order_by(token_lists.c.token)).all()
        return (
            [r.token for r in rows if r.list == "allow"],
            [r.token for r in rows if r.list == "deny"],
        )

    def readings(self, authorization_id: str) -> list[dict[str, Any]]:
        """An authorization's signed readings, in the order they arrived."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(meter_readings)
                .where(meter_readings.c.authorization_id == authorization_id)
                .order_by(meter_readings.c.seq)
            )
            return [dict(r._mapping) for r in rows]

    # -- card data --------------------------------------------------------------------------
    def claim_ksn(self, conn: Connection, ksn: str, authorization_id: str) -> bool:
        """Record that `authorization_id` used this KSN; False if another authorization did.

        The same authorization may present its KSN again: a retry after a processor timeout
        carries the same request, and the same blob, under the same idempotency key."""
        row = conn.execute(sa.select(seen_ksns).where(seen_ksns.c.ksn == ksn)).first()
        if row is not None:
            return bool(row.authorization_id == authorization_id)
        conn.execute(
            sa.insert(seen_ksns).values(ksn=ksn, authorization_id=authorization_id, at=now())
        )
        return True

    # -- reading ----------------------------------------------------------------------------
    def all_authorizations(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(authorizations).order_by(authorizations.c.created_at))
            return [dict(r._mapping) for r in rows]

    def all_movements(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(movements).order_by(movements.c.seq))
            return [dict(r._mapping) for r in rows]

    def card_history(self, card_token: str) -> list[dict[str, Any]]:
        """One card's authorizations on every kiosk of the fleet, oldest first (the token is
        the same fleet-wide, so this is how the gateway groups a driver's sessions)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(authorizations)
                .where(authorizations.c.card_token == card_token)
                .order_by(authorizations.c.created_at, authorizations.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def receipt(self, receipt_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(authorizations).where(authorizations.c.receipt_id == receipt_id)
            ).first()
            if row is None or row.receipt is None:
                return None
            receipt: dict[str, Any] = json.loads(row.receipt)
            return receipt

    def revenue(self) -> list[dict[str, Any]]:
        """Captured revenue per currency, with counts."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    authorizations.c.currency,
                    sa.func.count().label("sessions"),
                    sa.func.coalesce(sa.func.sum(authorizations.c.amount_captured), 0).label(
                        "captured"
                    ),
                    sa.func.coalesce(sa.func.sum(authorizations.c.energy_wh), 0).label("energy_wh"),
                )
                .where(authorizations.c.status == "captured")
                .group_by(authorizations.c.currency)
            )
            return [dict(r._mapping) for r in rows]
