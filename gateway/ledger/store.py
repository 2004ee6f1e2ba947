"""Reads and writes of the ledger's rows. A method that takes a `Connection` runs inside the
caller's transaction; the others are one transaction each (writes through `Ledger.write`, the
engine's group commit).

The money steps themselves (which rows change together, and when the processor is called)
live in `gateway.payments`; this module only knows rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from gateway.ledger import terminal_health
from gateway.ledger.batches import writer_for
from gateway.ledger.rollup import ROLLED_KINDS
from gateway.ledger.schema import (
    APPROVED,
    CAPTURED,
    PENDING,
    authorizations,
    events,
    idempotency,
    job_leases,
    meter_readings,
    movements,
    seen_ksns,
    terminal_status,
    token_lists,
    webhook_events,
)
from gateway.ledger.statements import Statement, columns

# An authorization's row as the money path reads it: a named tuple of every column of
# `authorizations` (`gateway.ledger.statements`), read by attribute like SQLAlchemy's rows.
AuthorizationRow = Any

# The card kinds of a terminal's own authorization requests (`wire.CardIn.kind`).
TERMINAL_CARD_KINDS = ("payment", "id_token")
IDEMPOTENCY_RETENTION = timedelta(hours=48)  # keys are kept at least 24 h (we keep 48 h)


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes for timezone-aware columns; they were stored in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def insert_new(conn: Connection, table: sa.Table, **values: Any) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; whether the row was new. Atomic on both back-ends, so
    two workers claiming one key cannot both win."""
    # RETURNING says whether a row went in (psycopg gives no rowcount for this statement).
    return _insert_new(table, tuple(values)).execute(conn, values).fetchone() is not None


# The money path's statements run on the driver's cursor (`gateway.ledger.statements`):
# built once per shape, compiled once per dialect, given their values at execution.
@functools.cache
def _insert_new(table: sa.Table, keys: tuple[str, ...]) -> Statement:
    def build(dialect: str) -> Any:
        return _on_conflict_do_nothing(table, dialect).returning(sa.literal_column("1"))

    return Statement(build, keys=keys)


def _on_conflict_do_nothing(table: sa.Table, dialect: str) -> Any:
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - only the two back-ends are supported
        raise RuntimeError(f"unsupported database {dialect}")
    return stmt.on_conflict_do_nothing()


_AUTHORIZATION = columns(authorizations)


@functools.cache
def _insert_row(keys: tuple[str, ...]) -> Statement:
    def build(dialect: str) -> Any:
        return _on_conflict_do_nothing(authorizations, dialect).returning(*_AUTHORIZATION)

    return Statement(build, keys=keys, returns=_AUTHORIZATION, name="Authorization")


_MOVE = Statement(
    sa.insert(movements),
    keys=("authorization_id", "kind", "amount", "currency", "step_key", "at", "rolled"),
)
_GET = Statement(
    sa.select(*_AUTHORIZATION).where(authorizations.c.id == sa.bindparam("_id")),
    returns=_AUTHORIZATION,
    name="Authorization",
)


def _row_and(extra: Any, returned_as: Any, name: str) -> Statement:
    """An authorization's row (all NULL when there is none) and one more value, `extra` (a
    labelled scalar subquery, read back as the column `returned_as`), in one statement: the
    row is outer-joined to a one-row select, so a row always comes back."""
    return Statement(
        sa.select(extra, *_AUTHORIZATION).select_from(
            sa.select(sa.literal_column("1").label("one"))
            .subquery("one")
            .outerjoin(authorizations, authorizations.c.id == sa.bindparam("_id"))
        ),
        returns=[returned_as, *_AUTHORIZATION],
        name=name,
    )


# What a new hold reads first: its row and the list its card's token is on (or NULL).
_LISTED = _row_and(
    sa.select(token_lists.c.list)
    .where(token_lists.c.token == sa.bindparam("_token"))
    .scalar_subquery()
    .label("list"),
    token_lists.c.list,
    "Listed",
)

# What a capture's claim reads first: its row and the id of the authorization its receipt id
# belongs to (or NULL).
_OWNED = _row_and(
    sa.select(authorizations.c.id)
    .where(authorizations.c.receipt_id == sa.bindparam("_receipt_id"))
    .scalar_subquery()
    .label("receipt_owner"),
    sa.column("receipt_owner", authorizations.c.id.type),
    "Owned",
)


@functools.cache
def _update_if(
    where: tuple[tuple[str, bool], ...], keys: tuple[str, ...], returning: bool
) -> Statement:
    """UPDATE authorizations SET `keys` … WHERE id = :_id AND each column in `where` is NULL
    (True) or equals :_w_<column> (False); RETURNING the row if `returning`."""
    stmt = sa.update(authorizations).where(authorizations.c.id == sa.bindparam("_id"))
    for column, is_null in where:
        col = authorizations.c[column]
        stmt = stmt.where(col.is_(None) if is_null else col == sa.bindparam(f"_w_{column}"))
    if returning:
        return Statement(
            stmt.returning(*_AUTHORIZATION), keys=keys, returns=_AUTHORIZATION, name="Authorization"
        )
    return Statement(stmt, keys=keys)


class Ledger:
    """The ledger's rows. `clock` stamps rows and decides expiries (tests pass a fake one)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = now) -> None:
        self.engine = engine
        self.clock = clock
        self.writer = writer_for(engine)

    def write(self, *, savepoint: bool = True) -> AbstractContextManager[Connection]:
        """A write transaction (a unit of the engine's group commit, `gateway.ledger.batches`):
        atomic, and committed before the `with` block is left. `savepoint=False` for one
        that never raises to refuse (`GroupCommit.unit`)."""
        return self.writer.unit(savepoint=savepoint)

    # -- authorizations ---------------------------------------------------------------------
    def get(self, conn: Connection, authorization_id: str) -> AuthorizationRow | None:
        """The authorization's row (a named tuple of every column), or None."""
        return _GET.first(conn, {"_id": authorization_id})

    def get_listed(
        self, conn: Connection, authorization_id: str, token: str
    ) -> tuple[AuthorizationRow | None, bool]:
        """The authorization's row (or None) and whether `token` is on the deny list: `get`
        and `is_denied` in one statement."""
        found = _LISTED.first(conn, {"_id": authorization_id, "_token": token})
        row = None if found.id is None else _GET.row._make(found[1:])
        return row, found.list == "deny"

    def get_with_receipt_owner(
        self, conn: Connection, authorization_id: str, receipt_id: str
    ) -> tuple[AuthorizationRow | None, str | None]:
        """The authorization's row (or None) and the id of the authorization `receipt_id`
        belongs to (or None): `get` and `receipt_owner` in one statement."""
        found = _OWNED.first(conn, {"_id": authorization_id, "_receipt_id": receipt_id})
        row = None if found.id is None else _GET.row._make(found[1:])
        return row, found.receipt_owner

    def fetch(self, authorization_id: str) -> AuthorizationRow | None:
        with self.engine.connect() as conn:
            return self.get(conn, authorization_id)

    def insert(self, conn: Connection, **values: Any) -> bool:
        """A new authorization row; False if the id exists already (nothing changed)."""
        stamp = self.clock()
        return insert_new(conn, authorizations, created_at=stamp, updated_at=stamp, **values)

    def insert_row(self, conn: Connection, **values: Any) -> AuthorizationRow | None:
        """`insert`, giving back the new row (None if the id exists already)."""
        stamp = self.clock()
        values = {"created_at": stamp, "updated_at": stamp, **values}
        return _insert_row(tuple(values)).first(conn, values)

    def update_if(
        self, conn: Connection, authorization_id: str, where: dict[str, Any], **values: Any
    ) -> bool:
        """Change the row only if its columns still hold `where` (None means SQL NULL): the
        compare-and-set every money step is built on. Whether it changed."""
        stmt, params = self._update(authorization_id, where, values, returning=False)
        return stmt.rowcount(conn, params) == 1

    def update_row(
        self, conn: Connection, authorization_id: str, where: dict[str, Any], **values: Any
    ) -> AuthorizationRow | None:
        """`update_if`, giving back the row as changed (None if it did not change)."""
        stmt, params = self._update(authorization_id, where, values, returning=True)
        return stmt.first(conn, params)

    def _update(
        self,
        authorization_id: str,
        where: dict[str, Any],
        values: dict[str, Any],
        *,
        returning: bool,
    ) -> tuple[Statement, dict[str, Any]]:
        shape = tuple((column, expected is None) for column, expected in where.items())
        params = {"updated_at": self.clock(), **values}
        keys = tuple(params)
        params["_id"] = authorization_id
        for column, expected in where.items():
            if expected is not None:
                params[f"_w_{column}"] = expected
        return _update_if(shape, keys, returning), params

    def move(
        self,
        conn: Connection,
        authorization_id: str,
        kind: str,
        amount: int,
        currency: str,
        *,
        step_key: str,
    ) -> datetime:
        """Append a money movement; the database refuses a second one for the same step.
        Returns the time it was recorded at."""
        at = self.clock()
        _MOVE.execute(
            conn,
            {
                "authorization_id": authorization_id,
                "kind": kind,
                "amount": amount,
                "currency": currency,
                "step_key": step_key,
                "at": at,
                # Only captures and refunds wait for the revenue roll-up; the others are
                # never in the rollup, so nothing is owed to it (`gateway.ledger.rollup_pending`).
                "rolled": kind not in ROLLED_KINDS,
            },
        )
        return at

    def moved(self, conn: Connection, authorization_id: str, step_key: str) -> int | None:
        """The amount of the movement a step recorded, None if it recorded none."""
        found = conn.execute(
            sa.select(movements.c.amount).where(
                movements.c.authorization_id == authorization_id,
                movements.c.step_key == step_key,
            )
        ).first()
        return None if found is None else int(found.amount)

    def unsettled_steps(self, older_than: datetime) -> list[sa.Row[Any]]:
        """Authorizations with a processor step whose answer was lost or whose worker is gone."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(authorizations).where(
                        authorizations.c.op.is_not(None),
                        sa.or_(
                            authorizations.c.op_state == "unknown",
                            authorizations.c.op_started_at < older_than,
                        ),
                    )
                )
            )

    def open_holds(self) -> list[sa.Row[Any]]:
        """Approved holds not yet captured or released."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(authorizations)
                    .where(authorizations.c.status == "approved")
                    .order_by(authorizations.c.created_at)
                )
            )

    def accounts_in_use(self) -> dict[tuple[str, str], int]:
        """(processor, merchant account) -> how many authorizations there are still open
        (being held, held, or with a step in flight): their adapters must stay configured."""
        open_ = sa.or_(
            authorizations.c.status.in_(("pending", "approved")), authorizations.c.op.is_not(None)
        )
        where = (authorizations.c.processor, authorizations.c.merchant_account)
        query = (
            sa.select(*where, sa.func.count())
            .where(open_, authorizations.c.processor != "")
            .group_by(*where)
        )
        with self.engine.connect() as conn:
            return {(row[0], row[1]): int(row[2]) for row in conn.execute(query)}

    def terminal_open_holds(self, terminal_id: str) -> tuple[list[sa.Row[Any]], str | None]:
        """One terminal's holds still open (approved, or being asked for), oldest first, and
        the id of the newest authorization it ever sent: what its kiosk checks its journal
        against at start-up (`GET /v1/terminals/{id}/open-authorizations`). Only the holds
        the terminal asked for itself (a card or token at the kiosk): a hold paid on the web
        is the gateway's until the kiosk has journaled its start command."""
        a = authorizations.c
        asked_by_terminal = a.card_kind.in_(TERMINAL_CARD_KINDS)
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    sa.select(authorizations)
                    .where(
                        a.terminal_id == terminal_id,
                        asked_by_terminal,
                        a.status.in_((APPROVED, PENDING)),
                    )
                    .order_by(a.created_at, a.id)
                )
            )
            newest = conn.execute(
                sa.select(a.id)
                .where(a.terminal_id == terminal_id, asked_by_terminal)
                .order_by(a.created_at.desc(), a.id.desc())
                .limit(1)
            ).scalar()
        return rows, None if newest is None else str(newest)

    def flag_stale(self, older_than: datetime) -> int:
        """Flag approved holds older than `older_than` that nobody settled."""
        with self.write() as conn:
            result = conn.execute(
                sa.update(authorizations)
                .where(
                    authorizations.c.status == "approved",
                    authorizations.c.created_at < older_than,
                    authorizations.c.flag.is_(None),
                )
                .values(flag="stale")
            )
            return int(result.rowcount or 0)

    def flag(self, authorization_id: str, flag: str) -> None:
        with self.write() as conn:
            conn.execute(
                sa.update(authorizations)
                .where(authorizations.c.id == authorization_id)
                .values(flag=flag)
            )

    def flagged(self) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.select(authorizations).where(authorizations.c.flag.is_not(None)))
            )

    # -- terminal data ----------------------------------------------------------------------
    def add_events(
        self, conn: Connection, terminal_id: str, items: list[tuple[str, str, str]]
    ) -> int:
        """Store (key, kind, detail) events; a key already stored for the terminal is skipped.
        Each new one is applied to what the fleet page reads (`terminal_health`). Returns how
        many were new."""
        if not items:
            return 0
        terminal_health.take(conn, terminal_id)
        new = 0
        for key, kind, detail in items:
            at = self.clock()
            if insert_new(
                conn, events, terminal_id=terminal_id, key=key, kind=kind, detail=detail, at=at
            ):
                terminal_health.note(conn, terminal_id, kind, detail, at)
                new += 1
        return new

    def put_status(self, conn: Connection, terminal_id: str, status: str) -> None:
        """Keep `status` (JSON) as the terminal's newest."""
        insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(terminal_status).values(
            terminal_id=terminal_id, status=status, received_at=self.clock()
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[terminal_status.c.terminal_id],
                set_={"status": stmt.excluded.status, "received_at": stmt.excluded.received_at},
            )
        )

    def add_readings(
        self, conn: Connection, terminal_id: str, items: list[tuple[str, str, str]]
    ) -> int:
        """Store (authorization id, kind, OCMF string) readings; one already stored is skipped.
        Returns how many were new."""
        return sum(
            insert_new(
                conn,
                meter_readings,
                authorization_id=authorization_id,
                terminal_id=terminal_id,
                kind=kind,
                ocmf=text,
                ocmf_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                received_at=self.clock(),
            )
            for authorization_id, kind, text in items
        )

    def put_token(self, token: str, list_name: str | None) -> None:
        """Put a token on the "allow" or "deny" list, or take it off (None)."""
        if list_name not in (None, "allow", "deny"):
            raise ValueError(f"list {list_name!r}")
        with self.write() as conn:
            conn.execute(sa.delete(token_lists).where(token_lists.c.token == token))
            if list_name is not None:
                conn.execute(
                    sa.insert(token_lists).values(token=token, list=list_name, at=self.clock())
                )

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
        if insert_new(conn, seen_ksns, ksn=ksn, authorization_id=authorization_id, at=self.clock()):
            return True
        row = conn.execute(sa.select(seen_ksns).where(seen_ksns.c.ksn == ksn)).first()
        return row is not None and bool(row.authorization_id == authorization_id)

    # -- processors' notifications ---------------------------------------------------------
    def by_reference(self, processor: str, account: str, reference: str) -> sa.Row[Any] | None:
        """The authorization a processor knows by `reference` (its payment's id)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(authorizations).where(
                    authorizations.c.processor == processor,
                    authorizations.c.merchant_account == account,
                    authorizations.c.processor_ref == reference,
                )
            ).first()

    def webhook_seen(self, processor: str, account: str, event_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(webhook_events.c.effect).where(
                    webhook_events.c.processor == processor,
                    webhook_events.c.account == account,
                    webhook_events.c.event_id == event_id,
                )
            ).first()
        return found is not None

    def record_webhook(self, **values: Any) -> bool:
        """Remember a notification taken (False: it was taken already)."""
        with self.write() as conn:
            return insert_new(conn, webhook_events, received_at=self.clock(), **values)

    def webhooks(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_events).order_by(webhook_events.c.received_at))
            return [dict(r._mapping) for r in rows]

    # -- background jobs --------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Win the job `name` for `seconds` unless another holder's lease is still running."""
        stamp = self.clock()
        until = stamp + timedelta(seconds=seconds)
        with self.write() as conn:
            if insert_new(conn, job_leases, name=name, holder=holder, expires_at=until):
                return True
            result = conn.execute(
                sa.update(job_leases)
                .where(
                    job_leases.c.name == name,
                    sa.or_(job_leases.c.expires_at < stamp, job_leases.c.holder == holder),
                )
                .values(holder=holder, expires_at=until)
            )
            return bool(result.rowcount == 1)

    def expire_keys(self) -> int:
        """Forget idempotency keys older than `IDEMPOTENCY_RETENTION`; how many went. A capture
        or void retried after that is still answered by the authorization's state."""
        with self.write() as conn:
            result = conn.execute(
                sa.delete(idempotency).where(
                    idempotency.c.created_at < self.clock() - IDEMPOTENCY_RETENTION
                )
            )
            return int(result.rowcount or 0)

    # -- reading ----------------------------------------------------------------------------
    def all_authorizations(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(authorizations).order_by(authorizations.c.created_at, authorizations.c.id)
            )
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
                sa.select(authorizations.c.receipt, authorizations.c.amount_refunded).where(
                    authorizations.c.receipt_id == receipt_id
                )
            ).first()
        if row is None or row.receipt is None:
            return None
        receipt: dict[str, Any] = json.loads(row.receipt)
        if row.amount_refunded:
            receipt["refunded"] = int(row.amount_refunded)  # the operator's refunds since
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
                .where(authorizations.c.status == CAPTURED)
                .group_by(authorizations.c.currency)
            )
            return [dict(r._mapping) for r in rows]
