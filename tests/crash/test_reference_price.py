"""The crash tests' independent price (`tests.crash.reference_price`): a worked example by
hand, and agreement with the kiosk's OCPI engine on generated sessions (two implementations
that share no code, so each checks the other)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from terminal.tariff.engine import OcpiTariff
from tests.crash.reference_price import Period, reference_total
from tests.crash.test_money_windows import TARIFF


def test_a_worked_example_by_hand() -> None:
    # FLAT 0.50 + 19 % = 0.595 -> 0.60 a session; ENERGY 0.30 + 19 % = 0.3570 a kWh:
    # 0.733 kWh = 0.261681 -> 0.26; TIME 2.40 an hour = 0.04 a minute + 19 % = 0.047600:
    # 4 minutes = 0.1904 -> 0.19; PARKING 9.00 an hour = 0.15 a minute + 19 % = 0.178500:
    # 95 s = 1.583333 minutes = 0.282625 -> 0.28 (not rounded up: not the last period).
    charged = reference_total(TARIFF, energy_wh=733, periods=[Period(charging=True, ms=240_000)])
    assert charged == 60 + 26 + 19
    paused = [
        Period(charging=True, ms=120_000),
        Period(charging=False, ms=95_000),
        Period(charging=True, ms=65_000),  # 185 s of charging in all -> 4 minutes (step 60 s)
    ]
    assert reference_total(TARIFF, energy_wh=733, periods=paused) == 60 + 26 + 19 + 28


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 3_600), st.integers(0, 5_000)),
        min_size=1,
        max_size=12,
    )
)
def test_the_reference_agrees_with_the_kiosks_engine(
    steps: list[tuple[bool, int, int]],
) -> None:
    tariff = OcpiTariff.from_json(json.dumps(TARIFF), tz=ZoneInfo("Europe/Berlin"))
    start = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    meterage = tariff.begin(start)
    at, energy = start, 0
    for charging, seconds, wh in steps:
        at += timedelta(seconds=seconds)
        energy += wh if charging else 0
        meterage = meterage.advance(
            at=at, energy_wh=energy, power_w=0, current_ma=0, charging=charging
        )
    periods = [Period(charging=c, ms=s * 1000) for c, s, _ in steps]
    assert meterage.total().minor == reference_total(TARIFF, energy_wh=energy, periods=periods)
