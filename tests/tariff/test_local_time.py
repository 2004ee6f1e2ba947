"""Restrictions in the station's local time (OCPI 2.2.1 mod_tariffs "TariffRestrictions
class": start_time / end_time / day_of_week / start_date / end_date are local to the
Location's `time_zone`), across midnight and both DST changes in Europe/Berlin (EU summer
time: last Sunday of March, 01:00 UTC, and of October, 01:00 UTC).

Each session is driven twice: sampled every minute, and in samples of several hours, so the
engine must split inside one sample interval exactly where a restriction flips."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.tariff.helpers import BERLIN, Phase, component, drive, local, make_tariff

HOUR = 3600
SAMPLING = pytest.mark.parametrize("every", [60, 3 * HOUR], ids=["per-minute", "per-3h"])


def _night_and_day() -> list[dict[str, object]]:
    # 1.00/h from 22:00 to 06:00 (end before start: wraps past midnight), else 2.00/h.
    return [
        {
            "price_components": [component("TIME", "1.00")],
            "restrictions": {"start_time": "22:00", "end_time": "06:00"},
        },
        {"price_components": [component("TIME", "2.00")]},
    ]


@SAMPLING
def test_time_of_day_boundary_inside_a_session(every: int) -> None:
    # 20:00 .. 23:00 local: 2 h at 2.00, 1 h at 1.00.
    priced = drive(
        make_tariff(_night_and_day()), local(2024, 5, 6, 20), [Phase(3 * HOUR, 9_000)], every=every
    )
    assert priced.exact_excl_vat == Decimal("5.00")


@SAMPLING
def test_night_window_wraps_past_midnight(every: int) -> None:
    # 23:00 .. 07:00 local on an ordinary night: 7 h at 1.00, 1 h at 2.00.
    priced = drive(
        make_tariff(_night_and_day()), local(2024, 5, 6, 23), [Phase(8 * HOUR, 30_000)], every=every
    )
    assert priced.exact_excl_vat == Decimal("9.00")


@SAMPLING
def test_spring_forward_night_is_one_hour_shorter(every: int) -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST. 23:00 CET .. 08:00 CEST is 8 real hours;
    # the night window 22:00 .. 06:00 local covers 6 of them (22:00Z .. 04:00Z).
    start = datetime(2024, 3, 30, 22, tzinfo=UTC)
    assert start.astimezone(BERLIN).hour == 23
    priced = drive(make_tariff(_night_and_day()), start, [Phase(8 * HOUR, 30_000)], every=every)
    assert priced.exact_excl_vat == Decimal("6.00") + Decimal("4.00")


@SAMPLING
def test_fall_back_night_is_one_hour_longer(every: int) -> None:
    # 2024-10-27: 03:00 CEST falls back to 02:00 CET. 23:00 CEST .. 08:00 CET is 10 real
    # hours; the night window covers 8 of them (21:00Z .. 05:00Z).
    start = datetime(2024, 10, 26, 21, tzinfo=UTC)
    assert start.astimezone(BERLIN).hour == 23
    priced = drive(make_tariff(_night_and_day()), start, [Phase(10 * HOUR, 30_000)], every=every)
    assert priced.exact_excl_vat == Decimal("8.00") + Decimal("4.00")


def _early_peak() -> list[dict[str, object]]:
    # 5.00/h from 02:30 to 04:00 local, else 1.00/h: 02:30 does not exist on the spring
    # day and exists twice on the autumn day.
    return [
        {
            "price_components": [component("TIME", "5.00")],
            "restrictions": {"start_time": "02:30", "end_time": "04:00"},
        },
        {"price_components": [component("TIME", "1.00")]},
    ]


@SAMPLING
def test_window_starting_in_the_skipped_hour_opens_at_the_jump(every: int) -> None:
    # 00:00Z .. 03:00Z on 2024-03-31: local 01:00 CET .. 05:00 CEST. Local time passes
    # 02:30 at the jump (01:00Z, 03:00 CEST) and leaves the window at 04:00 CEST (02:00Z):
    # 1 h at 5.00, 2 h at 1.00.
    start = datetime(2024, 3, 31, 0, tzinfo=UTC)
    priced = drive(make_tariff(_early_peak()), start, [Phase(3 * HOUR, 9_000)], every=every)
    assert priced.exact_excl_vat == Decimal("7.00")


@SAMPLING
def test_window_in_the_repeated_hour_applies_twice(every: int) -> None:
    # 00:00Z .. 04:00Z on 2024-10-27: local 02:00 CEST, 02:30 CEST (in), 02:00 CET at
    # 01:00Z (out again), 02:30 CET at 01:30Z (in), 04:00 CET at 03:00Z (out):
    # 0.5 h + 1.5 h at 5.00, 2 h at 1.00.
    start = datetime(2024, 10, 27, 0, tzinfo=UTC)
    priced = drive(make_tariff(_early_peak()), start, [Phase(4 * HOUR, 9_000)], every=every)
    assert priced.exact_excl_vat == Decimal("12.00")


@SAMPLING
def test_day_of_week_flips_at_local_midnight(every: int) -> None:
    # Sunday energy is 0.10 cheaper; Saturday 23:00 .. Sunday 01:00 local, 10 kWh an hour.
    tariff = make_tariff(
        [
            {
                "price_components": [component("ENERGY", "0.30")],
                "restrictions": {"day_of_week": ["SUNDAY"]},
            },
            {"price_components": [component("ENERGY", "0.40")]},
        ]
    )
    priced = drive(tariff, local(2024, 5, 4, 23), [Phase(2 * HOUR, 20_000)], every=every)
    assert {line.price: line.units for line in priced.lines} == {
        Decimal("0.40"): 10_000,
        Decimal("0.30"): 10_000,
    }


@SAMPLING
def test_start_and_end_date_are_local_and_end_is_exclusive(every: int) -> None:
    # A promotion valid on 2024-12-24 only (end_date 12-25 exclusive), local dates.
    tariff = make_tariff(
        [
            {
                "price_components": [component("TIME", "0.00")],
                "restrictions": {"start_date": "2024-12-24", "end_date": "2024-12-25"},
            },
            {"price_components": [component("TIME", "3.00")]},
        ]
    )
    priced = drive(tariff, local(2024, 12, 24, 22), [Phase(4 * HOUR, 9_000)], every=every)
    # 22:00 .. 24:00 free, 00:00 .. 02:00 on the 25th at 3.00.
    assert priced.exact_excl_vat == Decimal("6.00")


def test_energy_bound_splits_a_sample_at_the_exact_wh() -> None:
    # One sample of 2 h and 10 kWh crossing min_kwh 4: 4 kWh at 0.50, 6 kWh at 0.30, and
    # the TIME price that depends on kWh splits at the moment 4 kWh is reached (48 min).
    tariff = make_tariff(
        [
            {
                "price_components": [component("ENERGY", "0.50"), component("TIME", "1.00")],
                "restrictions": {"max_kwh": Decimal("4")},
            },
            {"price_components": [component("ENERGY", "0.30"), component("TIME", "2.00")]},
        ]
    )
    priced = drive(tariff, local(2024, 5, 6, 10), [Phase(2 * HOUR, 10_000)], every=2 * HOUR)
    costs = {(line.dimension.value, line.price): line.cost for line in priced.lines}
    assert costs == {
        ("ENERGY", Decimal("0.50")): Decimal("2.000"),
        ("ENERGY", Decimal("0.30")): Decimal("1.800"),
        ("TIME", Decimal("1.00")): Decimal("0.8"),
        ("TIME", Decimal("2.00")): Decimal("2.4"),
    }


def test_duration_bounds_count_from_session_start() -> None:
    # min_duration 3600: the 1.50/h element starts after the first hour of the session.
    tariff = make_tariff(
        [
            {
                "price_components": [component("PARKING_TIME", "1.50")],
                "restrictions": {"min_duration": 3600},
            },
        ]
    )
    priced = drive(
        tariff,
        local(2024, 5, 6, 10),
        [Phase(40 * 60, 5_000), Phase(2 * HOUR, charging=False)],
        every=HOUR,
    )
    # Parking from 00:40 to 02:40 of the session; billed from 01:00: 1 h 40 min.
    assert priced.exact_excl_vat == Decimal("2.50")
