"""The simulated processor finds a payment by its reference through the primary key, whatever
plan the database made for the statement: never by scanning the account's payments.

Every such statement also names the account (`account = … AND reference = …`). On PostgreSQL a
prepared statement's generic plan, made once per connection (often while the table is still
small or has no statistics), is kept for the connection's life: an index that `account` alone
could use was chosen once, and each capture then read every payment of the account (migration
0018). Both back-ends are asked for the plan they use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from sqlalchemy.engine import Connection, Engine

from gateway.ledger import migrate, open_engine
from gateway.ledger.schema import sim_payments
from gateway.processors import simulated

PAYMENTS = 300  # of one account, as at a site with one merchant account
ACCOUNT = "default"
AT = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(sim_payments),
            [
                {
                    "reference": f"sim_{n:04d}",
                    "account": ACCOUNT,
                    "payment_id": f"pay_{n:04d}",
                    "state": "held",
                    "currency": "EUR",
                    "held": 5000,
                    "captured": 0,
                    "refunded": 0,
                    "created_at": AT,
                }
                for n in range(PAYMENTS)
            ],
        )
    yield engine
    engine.dispose()


def _values() -> dict[str, Any]:
    """Execution values for the finding statements (`_CAPTURE`, `_PAYMENT`)."""
    return {
        "_account": ACCOUNT,
        "_reference": "sim_0150",
        "_held": "held",
        "_currency": "EUR",
        "_amount": 4000,
        "state": "captured",
        "captured": 4000,
    }


def _postgresql_indexes(conn: Connection, statement: Any) -> set[str]:
    compiled = statement._compiled(conn.dialect)
    driver: Any = conn.connection.dbapi_connection
    params = compiled.parameters(_values())
    with driver.cursor() as cur:
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute(b"PREPARE ev_plan AS " + compiled.sql)
        literals = ", ".join(psycopg_sql.Literal(p).as_string(driver) for p in params)
        cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE ev_plan({literals})")
        plan = cur.fetchone()[0]
        cur.execute("DEALLOCATE ev_plan")
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        if node.get("Node Type") == "Seq Scan":
            found.add(f"seq scan of {node['Relation Name']}")
        for child in node.get("Plans", []):
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return found


def _sqlite_indexes(conn: Connection, statement: Any) -> set[str]:
    compiled = statement._compiled(conn.dialect)
    cursor = conn.connection.dbapi_connection.cursor()
    rows = cursor.execute(
        "EXPLAIN QUERY PLAN " + compiled.sql, compiled.parameters(_values())
    ).fetchall()
    return {row[-1] for row in rows}


@pytest.mark.parametrize("name", ["_CAPTURE", "_PAYMENT"])
def test_a_payment_is_found_by_its_primary_key(engine: Engine, name: str) -> None:
    statement = getattr(simulated, name)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            assert _postgresql_indexes(conn, statement) == {"sim_payments_pkey"}
        else:
            # SQLite names a text primary key's index after the table.
            (plan,) = _sqlite_indexes(conn, statement)
            assert "USING INDEX sqlite_autoindex_sim_payments_1 (reference=?)" in plan, plan
