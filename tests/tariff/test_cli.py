"""`ev-terminal price` (terminal.tariff.cli.main): JSON out, exit 2 naming the bad field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminal.tariff.cli import main

REPO = Path(__file__).resolve().parents[2]
TIME_OF_DAY = REPO / "deploy" / "tariffs" / "time-of-day-with-idle-fee.json"

SESSION = {
    # 19:30 .. 20:30 Berlin charging 11 kWh, then parked 40 min (idle fee only 08:00-20:00).
    "start_date_time": "2024-05-06T17:30:00Z",
    "end_date_time": "2024-05-06T19:10:00Z",
    "charging_periods": [
        {
            "start_date_time": "2024-05-06T17:30:00Z",
            "dimensions": [
                {"type": "ENERGY", "volume": 11.0},
                {"type": "MAX_POWER", "volume": 11.0},
                {"type": "TIME", "volume": 1.0},
            ],
        },
        {
            "start_date_time": "2024-05-06T18:30:00Z",
            "dimensions": [{"type": "PARKING_TIME", "volume": 0.667}],
        },
    ],
}


def _write(tmp_path: Path, name: str, document: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_prices_a_session_across_a_time_of_day_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _write(tmp_path, "session.json", SESSION)
    code = main(["--tariff", str(TIME_OF_DAY), "--session", str(session), "--tz", "Europe/Berlin"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["currency"] == "EUR"
    # 0.50 start fee + 5.5 kWh at 0.45 before 20:00 + 5.5 kWh at 0.39 after; parking free.
    assert out["total_excl_vat"] == {"minor": 513, "amount": "5.13"}
    assert out["total_incl_vat"] == {"minor": 610, "amount": "6.10"}
    assert [(d["type"], d["unit_price"]) for d in out["dimensions"]] == [
        ("FLAT", "0.5"),
        ("ENERGY", "0.45"),
        ("ENERGY", "0.39"),
    ]
    assert out["vat"][0]["vat"] == {"minor": 97, "amount": "0.97"}


def test_time_zone_changes_the_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = _write(tmp_path, "session.json", SESSION)
    assert main(["--tariff", str(TIME_OF_DAY), "--session", str(session), "--tz", "UTC"]) == 0
    out = json.loads(capsys.readouterr().out)
    # In UTC the session is 17:30 .. 19:10: all energy at 0.45 and 40 min idle at 6.00/h.
    assert out["total_excl_vat"]["amount"] == "9.45"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("end_date_time"), "end_date_time"),
        (
            lambda s: s["charging_periods"][0]["dimensions"][0].update(volume=-1),
            "charging_periods[0].dimensions[0].volume",
        ),
        (
            lambda s: s["charging_periods"][1]["dimensions"][0].update(type="IDLE"),
            "charging_periods[1].dimensions[0].type",
        ),
        (
            lambda s: s["charging_periods"][1].update(start_date_time="2024-05-06T17:00:00Z"),
            "charging_periods[1].start_date_time",
        ),
        (
            lambda s: s["charging_periods"][0]["dimensions"][0].update(volume=1.0005),
            "charging_periods[0].dimensions",
        ),
    ],
)
def test_bad_session_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: object, field: str
) -> None:
    document = json.loads(json.dumps(SESSION))
    mutate(document)  # type: ignore[operator]
    session = _write(tmp_path, "session.json", document)
    assert main(["--tariff", str(TIME_OF_DAY), "--session", str(session)]) == 2
    err = capsys.readouterr().err
    assert f"{field}: " in err


def test_bad_tariff_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tariff = json.loads(TIME_OF_DAY.read_text())
    tariff["elements"][2]["price_components"][1]["step_size"] = "60"
    path = _write(tmp_path, "tariff.json", tariff)
    session = _write(tmp_path, "session.json", SESSION)
    assert main(["--tariff", str(path), "--session", str(session)]) == 2
    assert "elements[2].price_components[1].step_size: must be a number" in capsys.readouterr().err


def test_unknown_zone_and_missing_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _write(tmp_path, "session.json", SESSION)
    assert main(["--tariff", str(TIME_OF_DAY), "--session", str(session), "--tz", "Mars/Base"]) == 2
    assert "--tz: " in capsys.readouterr().err
    assert main(["--tariff", str(tmp_path / "none.json"), "--session", str(session)]) == 2
    assert "--tariff: " in capsys.readouterr().err
    assert main(["--tariff", str(TIME_OF_DAY)]) == 2


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "tariffs").glob("*.json")))
def test_deployed_example_tariffs_are_valid(path: Path, tmp_path: Path) -> None:
    session = _write(tmp_path, "session.json", SESSION)
    assert main(["--tariff", str(path), "--session", str(session), "--tz", "Europe/Berlin"]) == 0
