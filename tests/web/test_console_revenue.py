"""The revenue page's figures equal the ledger's sums to the cent: a generated month of
sessions (four currencies, one with no minor unit, five stations in two sites and none,
refunds full and partial, some made in the next period) through the gateway's real money
steps; the page, its JSON and its CSV checked against the generator's own record and the
ledger's movements, on both back-ends."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.ledger.rollup import stored_rows
from gateway.ledger.web_schema import READ_ONLY
from terminal.money import Money, minor_exponent
from tests.ledger_check import assert_rollup_agrees
from tests.postgres import PostgresServer
from tests.web.console_app import Clock, console_app
from tests.web.generate import STATIONS, Done, Generator

MARCH = datetime(2026, 3, 1, tzinfo=UTC)


def _expected(done: list[Done], start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in done:
        if not start <= d.at < end:
            continue
        figures = out[d.currency]
        if d.kind == "capture":
            figures["sessions"] += 1
            figures["gross"] += d.amount
            figures["vat"] += d.vat
        else:
            figures["refunds"] += d.amount
    return {c: {**f, "net": f["gross"] - f["vat"]} for c, f in out.items()}


def _ledger_sums(app: Any, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """The ledger's own sums of capture and refund movements in [start, end)."""
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for m in app.built.ledger.all_movements():
        at = m["at"] if m["at"].tzinfo else m["at"].replace(tzinfo=UTC)
        if m["kind"] in ("capture", "refund") and start <= at < end:
            sums[(m["currency"], m["kind"])] += int(m["amount"])
    return sums


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def month(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Generator]:
    """One generated month per back-end, shared by this module's tests (they only read)."""
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path_factory.mktemp('month') / 'gateway.sqlite3'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        db_url = server.database(template=request.getfixturevalue("gateway_template"))
    clock = Clock(MARCH)
    app = console_app(db_url, clock)
    app.add("reader", role=READ_ONLY)
    gen = Generator(app.built.payments, clock, seed=7)
    gen.month(MARCH - timedelta(days=2), 12)  # late February: outside March (some refunds inside)
    ids = gen.month(MARCH, 150)
    gen.month(MARCH + timedelta(days=31), 8)  # April
    # A February capture refunded in March counts as a March refund.
    feb = gen.session(MARCH - timedelta(days=5), currency="EUR")
    gen.refund(feb, 100, MARCH + timedelta(days=3))
    # At the month's edges.
    gen.session(MARCH, currency="JPY")
    gen.session(MARCH + timedelta(days=31) - timedelta(seconds=2), currency="GBP")
    assert len(ids) == 150
    clock.now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    return app, gen


def test_revenue_figures_equal_the_ledger_to_the_cent(month: tuple[Any, Generator]) -> None:
    app, gen = month
    client = app.signed_in("reader")
    start, end = MARCH, datetime(2026, 4, 1, tzinfo=UTC)
    data = client.get("/console/revenue.json?period=month&tz=UTC").json()
    assert data["period"]["start"] == start.isoformat()
    assert data["period"]["end"] == end.isoformat()
    expected = _expected(gen.done, start, end)
    assert len(expected) == 4
    ledger = _ledger_sums(app, start, end)
    for currency, figures in expected.items():
        got = data["totals"][currency]
        for key in ("sessions", "gross", "vat", "net", "refunds"):
            assert got[key] == figures.get(key, 0), (currency, key)
        assert got["gross"] == ledger[(currency, "capture")]
        assert got["refunds"] == ledger.get((currency, "refund"), 0)
        assert got["after_refunds"] == got["gross"] - got["refunds"]
    assert set(data["totals"]) == set(expected)
    # Every breakdown adds up to the totals, and the stations' groups are the generator's.
    for dimension, rows in data["by"].items():
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in rows:
            for key in ("sessions", "gross", "vat", "refunds"):
                sums[row["currency"]][key] += row[key]
        for currency, figures in expected.items():
            for key in ("sessions", "gross", "vat", "refunds"):
                assert sums[currency][key] == figures.get(key, 0), (dimension, currency, key)
    sites = {row["key"] for row in data["by"]["site"]}
    assert sites == {"Berlin Mitte", "Hamburg Hafen", "(no site)"}
    stations = {row["key"] for row in data["by"]["station"]}
    assert stations <= {name or terminal for terminal, _, name in STATIONS}
    per_station = defaultdict(int)
    for d in gen.done:
        if d.kind == "capture" and start <= d.at < end and d.currency == "EUR":
            per_station[next(n or t for t, _, n in STATIONS if t == d.terminal)] += d.amount
    got_station = {r["key"]: r["gross"] for r in data["by"]["station"] if r["currency"] == "EUR"}
    assert got_station == dict(per_station)
    # The chart's series is the same money per day.
    for currency, figures in expected.items():
        assert sum(p["gross"] for p in data["series"][currency]) == figures["gross"]


def test_the_page_and_the_csv_show_the_same_figures(month: tuple[Any, Generator]) -> None:
    app, gen = month
    client = app.signed_in("reader")
    expected = _expected(gen.done, MARCH, datetime(2026, 4, 1, tzinfo=UTC))
    page = client.get("/console/revenue?period=month&tz=UTC").text
    for currency, figures in expected.items():
        for key in ("gross", "vat", "net", "refunds"):
            shown = Money(figures.get(key, 0), currency).format()
            assert f'data-figure="{key}-{currency}">{shown}<' in page, (currency, key)
    answer = client.get("/console/revenue.csv?period=month&tz=UTC")
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    totals = {r["currency"]: r for r in rows if r["dimension"] == "total"}
    for currency, figures in expected.items():
        scale = Decimal(1).scaleb(-minor_exponent(currency))
        for key in ("gross", "vat", "net", "refunds"):
            assert Decimal(totals[currency][key]) == figures.get(key, 0) * scale, (currency, key)


def test_a_period_in_a_time_zone_moves_the_edges(month: tuple[Any, Generator]) -> None:
    """March in Berlin starts at 23:00 UTC on 28 February and ends at 22:00 UTC on 31 March
    (summer time from 29 March): captures near the edges move between months."""
    app, gen = month
    client = app.signed_in("reader")
    data = client.get("/console/revenue.json?period=month&tz=Europe/Berlin").json()
    start = datetime(2026, 2, 28, 23, tzinfo=UTC)
    end = datetime(2026, 3, 31, 22, tzinfo=UTC)
    assert data["period"]["start"] == start.isoformat()
    assert data["period"]["end"] == end.isoformat()
    expected = _expected(gen.done, start, end)
    assert {c: data["totals"][c]["gross"] for c in data["totals"]} == {
        c: f["gross"] for c, f in expected.items()
    }
    # The GBP capture two seconds before April (UTC) is April in Berlin.
    assert _expected(gen.done, start, end) != _expected(gen.done, MARCH, MARCH + timedelta(days=31))


def test_today_week_and_range(month: tuple[Any, Generator]) -> None:
    app, gen = month
    client = app.signed_in("reader")
    for query, start, end in (
        ("period=today", datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 3, 21, tzinfo=UTC)),
        ("period=week", datetime(2026, 3, 16, tzinfo=UTC), datetime(2026, 3, 23, tzinfo=UTC)),
        (
            "period=range&from=2026-02-25&to=2026-03-04",
            datetime(2026, 2, 25, tzinfo=UTC),
            datetime(2026, 3, 5, tzinfo=UTC),
        ),
    ):
        data = client.get(f"/console/revenue.json?{query}").json()
        expected = _expected(gen.done, start, end)
        assert {c: f["gross"] for c, f in data["totals"].items()} == {
            c: f["gross"] for c, f in expected.items() if f.get("gross") or f.get("refunds")
        }, query
        assert {c: f["refunds"] for c, f in data["totals"].items()} == {
            c: f.get("refunds", 0) for c, f in expected.items()
        }, query


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("period=year", "period"),
        ("tz=Mars/Olympus", "tz"),
        ("period=range&from=2026-03-10&to=2026-03-01", "to"),
        ("period=range&from=yesterday&to=2026-03-01", "from"),
        ("period=range&from=2024-01-01&to=2026-03-01", "366"),
    ],
)
def test_a_bad_period_is_a_clear_400(db_url: str, query: str, names: str) -> None:
    app = console_app(db_url)
    app.add("reader", role=READ_ONLY)
    client = app.signed_in("reader")
    page = client.get(f"/console/revenue?{query}")
    assert page.status_code == 400
    assert names in page.text
    data = client.get(f"/console/revenue.json?{query}")
    assert data.status_code == 400
    assert names in data.json()["error"]


def test_the_rollup_equals_a_sum_from_scratch(month: tuple[Any, Generator]) -> None:
    """The rollup the money steps kept, capture by capture and refund by refund, is what the
    movements and receipts sum to; and it has rows at every grain and dimension."""
    app, _ = month
    assert_rollup_agrees(app.built.ledger.engine)
    with app.built.ledger.engine.connect() as conn:
        stored = stored_rows(conn)
    assert {(k[0], k[2]) for k in stored} == {
        (g, d)
        for g in ("q", "h", "d", "w", "m")
        for d in ("all", "terminal", "processor", "method", "brand")
    }


def test_a_zone_a_quarter_hour_off_the_utc_hour_equals_the_ledger(
    month: tuple[Any, Generator],
) -> None:
    """March in Kathmandu (UTC+05:45) starts and ends at a quarter past the UTC hour: its
    edges are quarter hours of the rollup, and the figures still equal the ledger."""
    app, gen = month
    client = app.signed_in("reader")
    data = client.get("/console/revenue.json?period=month&tz=Asia/Kathmandu").json()
    start = datetime(2026, 2, 28, 18, 15, tzinfo=UTC)
    end = datetime(2026, 3, 31, 18, 15, tzinfo=UTC)
    assert data["period"]["start"] == start.isoformat()
    assert data["period"]["end"] == end.isoformat()
    expected = _expected(gen.done, start, end)
    for currency, figures in expected.items():
        for key in ("sessions", "gross", "vat", "refunds"):
            assert data["totals"][currency][key] == figures.get(key, 0), (currency, key)
    assert set(data["totals"]) == set(expected)
