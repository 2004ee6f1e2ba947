"""Whole scripted sessions priced with the OCPI example tariffs in deploy/tariffs/, at a station
in Europe/Berlin: across a time-of-day boundary and across both DST changes. Each captures
exactly the engine's price of the energy and time delivered, shows and stores an itemized
receipt, and leaves the ledger consistent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from launcher.simulate import Simulation, run_script
from terminal.config import Config, TariffConfig
from terminal.core.screens import Receipt, frame_for
from terminal.tariff import ChargingPeriod, OcpiTariff
from tests.ledger_check import assert_ledger_agrees

ROOT = Path(__file__).resolve().parent.parent
TARIFFS = ROOT / "deploy" / "tariffs"
BERLIN = ZoneInfo("Europe/Berlin")
POWER_W = 11_000  # the simulated vehicle's charger


def ocpi(config: Config, name: str) -> Config:
    tariff = TariffConfig(name=name, ocpi_file=TARIFFS / f"{name}.json")
    return replace(config, tariff=tariff)


@pytest.fixture
def sims() -> Iterator[list[Simulation]]:
    made: list[Simulation] = []
    yield made
    for sim in made:
        sim.close()


def session_script(charge_min: int, park_min: int) -> str:
    """Tap and plug one minute before charging starts; charge, then the car is full and
    parks; unplug (the final reading)."""
    return (
        f"expect idle\ntap visa\nplug\nwait 1m\nev charge\nexpect charging\n"
        f"wait {charge_min}m\nev done\nexpect suspended\nwait {park_min}m\nunplug\n"
        "expect receipt\n"
    )


def engine_price(tariff: OcpiTariff, charge_at: datetime, charge_min: int, park_min: int) -> int:
    """The engine's price, by full recomputation, of `charge_min` at the simulated charger's
    power from `charge_at`, then `park_min` parked."""
    parked_at = charge_at + timedelta(minutes=charge_min)
    periods = [
        ChargingPeriod(
            start=charge_at,
            energy_wh=POWER_W * charge_min // 60,
            power_w=POWER_W,
            current_ma=0,
            charging=True,
        ),
        ChargingPeriod(start=parked_at, energy_wh=0, power_w=0, current_ma=0, charging=False),
    ]
    end = parked_at + timedelta(minutes=park_min)
    return tariff.price(start=charge_at, periods=periods, end=end).bill.total.minor


def run(
    config: Config,
    tmp_path: Path,
    sims: list[Simulation],
    *,
    tariff: str,
    charge_at: datetime,
    charge_min: int,
    park_min: int,
) -> tuple[Simulation, int]:
    cfg = ocpi(config, tariff)
    start = charge_at - timedelta(minutes=1)
    sim = run_script(
        cfg, session_script(charge_min, park_min), tmp_path / f"sim{len(sims)}", start=start
    )
    sims.append(sim)
    engine = OcpiTariff.from_json((TARIFFS / f"{tariff}.json").read_bytes(), tz=BERLIN)
    return sim, engine_price(engine, charge_at, charge_min, park_min)


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    "case",
    [
        # Tuesday 19:30-20:15 charging: 5.5 kWh at 0.45 until 20:00, 2.75 kWh at 0.39, plus
        # the 0.50 session fee; parked 20:15-20:25 after the idle fee's hours (08-20).
        # Billed incl. VAT at the prices shown: 0.60 + 5.5 x 0.5355 (2.95) + 2.75 x 0.4641
        # (1.28) = 4.83 EUR.
        (local(2026, 1, 20, 19, 30), 45, 10, 483),
        # Tuesday 19:00-19:45 charging (8.25 kWh at 0.45), then parked until 20:15: the idle
        # fee (6.00 per hour) runs until 20:00 only, 15 min = 1.50.
        # 0.60 + 8.25 x 0.5355 (4.42) + 15 x 0.119 (1.79) = 6.81 EUR.
        (local(2026, 1, 20, 19, 0), 45, 30, 681),
    ],
    ids=["energy-price-changes-at-20h", "idle-fee-ends-at-20h"],
)
def test_session_across_a_time_of_day_boundary_captures_the_engines_price(
    config: Config,
    tmp_path: Path,
    sims: list[Simulation],
    case: tuple[datetime, int, int, int],
) -> None:
    charge_at, charge_min, park_min, expected_minor = case
    sim, price = run(
        config,
        tmp_path,
        sims,
        tariff="time-of-day-with-idle-fee",
        charge_at=charge_at,
        charge_min=charge_min,
        park_min=park_min,
    )
    [result] = sim.results()
    assert result["energy_wh"] == POWER_W * charge_min // 60
    assert result["amount_captured"] == price == expected_minor
    assert_ledger_agrees(sim)


@pytest.mark.slow
@pytest.mark.parametrize(
    "charge_at",
    [
        # 29 March 2026: 02:00 CET becomes 03:00 CEST. 01:00 CET = 00:00 UTC.
        datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
        # 25 October 2026: 03:00 CEST becomes 02:00 CET. 01:00 UTC = 03:00 CEST, then 02:00 CET.
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_session_across_a_dst_change_ends_the_night_price_at_local_six(
    config: Config, tmp_path: Path, sims: list[Simulation], charge_at: datetime
) -> None:
    # 4.5 h of charging on a Sunday; the night price (0.30, 22:00-06:00 local) ends four hours
    # in, at 06:00 local time after the change (04:00 UTC in spring, 05:00 UTC in autumn):
    # 44 kWh at 0.30 and 5.5 kWh at 0.39, plus the 0.50 session fee.
    # Excl. VAT 0.50 + 13.20 + 2.15 = 15.85; 19 % VAT 3.01: 18.86 EUR.
    assert (charge_at + timedelta(hours=4)).astimezone(BERLIN).hour == 6
    sim, price = run(
        config,
        tmp_path,
        sims,
        tariff="time-of-day-with-idle-fee",
        charge_at=charge_at,
        charge_min=270,
        park_min=5,
    )
    [result] = sim.results()
    assert result["energy_wh"] == 49_500
    assert result["amount_captured"] == price == 1886
    assert_ledger_agrees(sim)


def test_power_tier_and_idle_fee_after_the_car_is_full(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    # 11 kW is under the 50 kW tier: 0.42 per kWh; the first element has no idle fee, so the
    # second's applies while parked (12.00 per hour): 2.31 + 4.00 = 6.31 excl. VAT, 1.20
    # VAT: 7.51 EUR.
    sim, price = run(
        config,
        tmp_path,
        sims,
        tariff="dc-power-tiers",
        charge_at=local(2026, 1, 21, 10, 0),
        charge_min=30,
        park_min=20,
    )
    [result] = sim.results()
    assert result["amount_captured"] == price == 751
    assert_ledger_agrees(sim)


def test_idle_screen_shows_the_ocpi_price_before_start(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    cfg = ocpi(config, "time-of-day-with-idle-fee")
    sim = run_script(cfg, "expect idle\n", tmp_path / "idle", start=local(2026, 1, 20, 12, 0))
    sims.append(sim)
    frame = sim.hardware.display.current
    assert frame is not None and frame.name == "idle"
    text = "\n".join(frame.lines)
    engine = OcpiTariff.from_json(
        (TARIFFS / "time-of-day-with-idle-fee.json").read_bytes(), tz=BERLIN
    )
    for line in engine.price_lines(local(2026, 1, 20, 12, 0)):
        assert line in text
    assert "0.5355 EUR" in text  # 0.45 per kWh incl. 19 % VAT, at noon on a Tuesday


def test_receipt_is_itemized_on_screen_and_on_the_gateways_page(
    config: Config, tmp_path: Path, sims: list[Simulation]
) -> None:
    sim, price = run(
        config,
        tmp_path,
        sims,
        tariff="time-of-day-with-idle-fee",
        charge_at=local(2026, 1, 20, 19, 0),
        charge_min=45,
        park_min=30,
    )
    screen = sim.daemon.executor.screen
    assert isinstance(screen, Receipt) and screen.bill is not None
    bill = screen.bill
    assert {line.dimension for line in bill.lines} == {"FLAT", "ENERGY", "PARKING_TIME"}
    frame = frame_for(screen)
    fields = dict(frame.fields)
    # Each line incl. VAT at the unit price shown before start; VAT 19/119 of 6.81 = 1.09.
    assert fields["Total"] == "6.81 EUR"
    assert fields["Session fee"] == "0.60 EUR"
    assert fields["Energy 8.250 kWh at 0.5355 EUR/kWh"] == "4.42 EUR"
    assert fields["Idle time 0:15:00 at 0.119 EUR/min"] == "1.79 EUR"
    assert fields["VAT 19% on 5.72 EUR"] == "1.09 EUR"
    assert "Tariff: time-of-day-with-idle-fee" in frame.lines
    assert frame.qr is not None and frame.qr.endswith(screen.receipt_id)

    stored = requests.get(f"{sim.gateway.url}/v1/receipts/{screen.receipt_id}", timeout=10)
    assert stored.status_code == 200
    receipt = stored.json()
    assert receipt["total"] == price
    assert receipt["tariff"] == "time-of-day-with-idle-fee"
    assert receipt["card"] == "Visa **** 0010"
    assert len(receipt["lines"]) == len(bill.lines)

    page = requests.get(f"{sim.gateway.url}/receipts/{screen.receipt_id}", timeout=10)
    assert page.status_code == 200
    html = page.text
    assert f"Receipt {screen.receipt_id}" in html
    assert "Tariff: time-of-day-with-idle-fee" in html
    # The page shows the rows of the kiosk's receipt screen: each line incl. VAT at the unit
    # price shown before start, the total excl. VAT, VAT per rate, the total.
    for label, value in frame.fields:
        assert (
            f'<dt class="label">{label}</dt><dd class="value{"" if label == "Card" else " amount"}"'
            in html
        )
        assert value in html
    bill = html.split('id="bill"', 1)[1].split("</section>", 1)[0]  # the bill only
    assert bill.count('<div class="line">') == len(frame.fields) - 1
    assert '<dd class="value amount" id="total-value">6.81 EUR</dd>' in html
    assert json.loads(json.dumps(receipt))["vat"] == [{"percent": "19", "base": 572, "vat": 109}]
