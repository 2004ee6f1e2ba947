"""The revenue rollup's cover of a period: whole UTC months, days, hours and quarter hours,
and leftovers shorter than a quarter hour, tiling the period exactly
(`gateway.ledger.rollup.cover`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.ledger.rollup import Cover, bucket, cover, next_bucket, signed_cover, starts

INSTANTS = st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(INSTANTS, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_a_cover_tiles_the_period_exactly(start: datetime, length: timedelta) -> None:
    end = start + length
    c = cover(start, end)
    pieces: list[tuple[datetime, datetime]] = list(c.raw)
    for grain, first, last in c.buckets:
        assert bucket(first, grain) == first and bucket(last, grain) == last  # whole buckets
        assert first < last
        pieces.append((first, last))
    for first, last in c.raw:
        assert last - first < timedelta(minutes=15)  # only sub-quarter-hour edges are raw
    pieces.sort()
    at = start
    for first, last in pieces:
        assert first == at
        at = last
    assert at == end or (start == end and not pieces)


def test_march_in_berlin_is_one_hour_weeks_days_and_hours() -> None:
    start = datetime(2026, 2, 28, 23, tzinfo=UTC)
    end = datetime(2026, 3, 31, 22, tzinfo=UTC)
    c = cover(start, end)
    assert c.raw == ()
    assert c.buckets == (
        # 2 March 2026 is a Monday: four ISO weeks, then the days either side.
        ("w", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)),
        ("d", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        ("h", start, datetime(2026, 3, 1, tzinfo=UTC)),
        ("d", datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        ("h", datetime(2026, 3, 31, tzinfo=UTC), end),
    )


def test_a_week_in_berlin_is_three_buckets() -> None:
    """Its ISO week (from Monday 00:00 UTC), the hour before added, its last hour taken away."""
    start = datetime(2026, 3, 1, 23, tzinfo=UTC)  # Monday 2 March, 00:00 in Berlin
    end = start + timedelta(days=7)
    c = signed_cover(start, end)
    assert c.raw == ()
    assert c.buckets == (
        ("h", start, datetime(2026, 3, 2, tzinfo=UTC)),
        ("w", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)),
    )
    assert c.minus == (("h", end, datetime(2026, 3, 9, tzinfo=UTC)),)


def test_a_whole_month_is_one_bucket() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    assert next_bucket(start, "m") == datetime(2027, 1, 1, tzinfo=UTC)
    assert cover(start, next_bucket(start, "m")).buckets == (("m", start, next_bucket(start, "m")),)


def test_a_month_in_nepal_needs_no_movements() -> None:
    """Kathmandu is UTC+05:45: its months start and end at a quarter past the UTC hour."""
    start = datetime(2026, 2, 28, 18, 15, tzinfo=UTC)
    end = datetime(2026, 3, 31, 18, 15, tzinfo=UTC)
    c = cover(start, end)
    assert c.raw == ()
    assert ("q", start, datetime(2026, 2, 28, 19, tzinfo=UTC)) in c.buckets
    assert ("q", datetime(2026, 3, 31, 18, tzinfo=UTC), end) in c.buckets


def test_an_offset_of_odd_minutes_is_read_from_the_movements() -> None:
    start = datetime(2026, 3, 1, 0, 7, tzinfo=UTC)  # local mean time, say
    c = cover(start, start + timedelta(days=1))
    assert c.raw == (
        (start, datetime(2026, 3, 1, 0, 15, tzinfo=UTC)),
        (datetime(2026, 3, 2, 0, tzinfo=UTC), start + timedelta(days=1)),
    )


QUARTERS = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def _counted(c: Cover) -> list[tuple[datetime, int]]:
    """How many times the instants from each change on are counted by `c`'s buckets (added
    ones once, taken-away ones minus once): a sweep over the buckets' ends."""
    steps: dict[datetime, int] = {}
    for sign, pieces in ((1, c.buckets), (-1, c.minus)):
        for grain, first, last in pieces:
            assert bucket(first, grain) == first and bucket(last, grain) == last  # whole buckets
            assert first < last
            steps[first] = steps.get(first, 0) + sign
            steps[last] = steps.get(last, 0) - sign
    out, level = [], 0
    for at in sorted(steps):
        level += steps[at]
        if level != (out[-1][1] if out else 0):
            out.append((at, level))
    return out


@given(
    QUARTERS, st.integers(min_value=0, max_value=400 * 96), st.integers(0, 14), st.integers(0, 14)
)
def test_a_signed_cover_counts_every_instant_of_the_period_once(
    start: datetime, quarters: int, early: int, late: int
) -> None:
    """What the added buckets count less what the taken-away ones count is every instant of
    the period's whole quarter hours once and nothing outside them; only the odd minutes at
    the ends are raw, and it never reads more buckets than the plain cover."""
    start = bucket(start, "q") - timedelta(minutes=early)
    end = start + timedelta(minutes=15 * quarters + early + late)
    c = signed_cover(start, end)
    first, last = start + timedelta(minutes=early), end - timedelta(minutes=late)
    if first < last:
        assert _counted(c) == [(first, 1), (last, 0)]
        assert c.raw == tuple((a, b) for a, b in ((start, first), (last, end)) if a < b)
    else:
        assert _counted(c) == [] and c.raw == (((start, end),) if start < end else ())

    def read(pieces: tuple[tuple[str, datetime, datetime], ...]) -> int:
        return sum(len(starts(a, b, grain)) for grain, a, b in pieces)

    assert read(c.buckets) + read(c.minus) <= read(cover(start, end).buckets)  # never more rows


def test_a_month_in_berlin_is_three_buckets() -> None:
    """Its UTC month, the hour before it added, the last hour of the UTC month taken away."""
    start = datetime(2026, 2, 28, 23, tzinfo=UTC)
    end = datetime(2026, 3, 31, 22, tzinfo=UTC)
    c = signed_cover(start, end)
    assert c.raw == ()
    assert c.buckets == (
        ("h", start, datetime(2026, 3, 1, tzinfo=UTC)),
        ("m", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
    )
    assert c.minus == (("h", end, datetime(2026, 4, 1, tzinfo=UTC)),)
