"""The revenue rollup as a group-commit batch writes it (`gateway.ledger.rollup.roll_up_all`,
the finisher run once per batch): captures and refunds of several terminals, brands,
processors and currencies, in several buckets, one of them given twice, written in one call,
leave exactly the rows the from-scratch expansion of each movement sums to (the expansion
`expected_rows` checks the ledger with), and adding to rows already there adds. On both
back-ends (PostgreSQL writes a batch in one statement)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger import open_engine
from gateway.ledger.database import migrate
from gateway.ledger.rollup import Key, _deltas, delta, roll_up_all, stored_rows

AT = datetime(2026, 3, 30, 23, 52, tzinfo=UTC)  # a quarter hour, day, week and month's end

MOVEMENTS: list[dict[str, Any]] = [
    # kind, amount, vat, currency, terminal, processor, method, brand, minutes after AT
    {"kind": k, "amount": a, "vat": v, "currency": c, "groups": g, "at": AT + timedelta(minutes=m)}
    for k, a, v, c, g, m in [
        ("capture", 1234, 197, "EUR", ("K1", "simulated", "payment", "visa"), 0),
        ("capture", 1234, 197, "EUR", ("K1", "simulated", "payment", "visa"), 0),  # again
        ("capture", 990, 158, "EUR", ("K2", "simulated", "payment", "mastercard"), 3),
        ("capture", 500, 80, "EUR", ("K3", "stripe", "web_card", "visa"), 9),  # next month
        ("refund", 300, 0, "EUR", ("K1", "simulated", "payment", "visa"), 1),
        ("capture", 700, 0, "JPY", ("K2", "simulated", "id_token", ""), 2),
        ("capture", 2500, 399, "EUR", ("K4", "", "payment", ""), -40),  # another hour
    ]
]


def _groups(terminal: str, processor: str, method: str, brand: str) -> dict[str, str]:
    return {
        "all": "",
        "terminal": terminal,
        "processor": processor,
        "method": method,
        "brand": brand,
    }


def _expected(movements: list[dict[str, Any]]) -> dict[Key, tuple[int, int, int, int]]:
    sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for m in movements:
        for row in _deltas(**{**m, "groups": _groups(*m["groups"])}):
            key = (row["grain"], row["bucket"], row["dimension"], row["key"], row["currency"])
            for i, name in enumerate(("captures", "gross", "vat", "refunds")):
                sums[key][i] += row[name]
    return {k: (v[0], v[1], v[2], v[3]) for k, v in sums.items()}


def test_a_batch_of_movements_rolls_up_as_each_movement_would(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        deltas = [delta(**{**m, "groups": _groups(*m["groups"])}) for m in MOVEMENTS]
        with engine.begin() as conn:
            roll_up_all(conn, deltas)
        with engine.connect() as conn:
            assert stored_rows(conn) == _expected(MOVEMENTS)
            # The fleet's EUR captures on the day: both of K1's, K2's, and K4's an hour
            # before; K3's fell on the next day (and month), the refund counts on its own.
            day = ("d", datetime(2026, 3, 30, tzinfo=UTC), "all", "", "EUR")
            assert stored_rows(conn)[day] == (4, 1234 * 2 + 990 + 2500, 197 * 2 + 158 + 399, 300)

        # A second batch adds to the rows the first one wrote.
        with engine.begin() as conn:
            roll_up_all(conn, deltas[:3])
            roll_up_all(conn, [])
        with engine.connect() as conn:
            assert stored_rows(conn) == _expected(MOVEMENTS + MOVEMENTS[:3])
    finally:
        engine.dispose()
