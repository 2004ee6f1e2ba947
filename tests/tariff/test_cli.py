"""`ev-terminal price` (terminal.tariff.cli.main): JSON out, exit 2 naming the bad field."""

from __future__ import annotations

import json
from decimal import Decimal
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


def _run(tmp_path: Path, session: object, *extra: str, tariff: Path = TIME_OF_DAY) -> int:
    path = _write(tmp_path, "session.json", session)
    return main(["--tariff", str(tariff), "--session", str(path), *extra])


def test_time_zone_is_required_when_the_tariff_reads_local_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, SESSION) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "--tz: the tariff's elements[1].restrictions.start_time" in err
    # A tariff without time or day restrictions needs none.
    assert _run(tmp_path, SESSION, tariff=REPO / "deploy" / "tariffs" / "simple-per-kwh.json") == 0


def test_time_zone_is_read_from_the_session_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, SESSION, "--tz", "Europe/Berlin") == 0
    given = json.loads(capsys.readouterr().out)
    assert _run(tmp_path, {**SESSION, "time_zone": "Europe/Berlin"}) == 0
    assert json.loads(capsys.readouterr().out) == given
    assert _run(tmp_path, {**SESSION, "time_zone": "Europe/Berlin"}, "--tz", "UTC") == 2
    assert "--tz: UTC differs from the session's time_zone Europe/Berlin" in capsys.readouterr().err
    assert _run(tmp_path, {**SESSION, "time_zone": "Mars/Base"}) == 2
    assert "time_zone: unknown time zone 'Mars/Base'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(start_datetime="2024-05-06T17:30:00Z"), "start_datetime"),
        (lambda s: s["charging_periods"][0].update(dimension=[]), "charging_periods[0].dimension"),
        (
            lambda s: s["charging_periods"][1]["dimensions"][0].update(value=1),
            "charging_periods[1].dimensions[0].value",
        ),
    ],
    ids=["session", "period", "dimension"],
)
def test_unknown_fields_in_the_session_file_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: object, field: str
) -> None:
    document = json.loads(json.dumps(SESSION))
    mutate(document)  # type: ignore[operator]
    assert _run(tmp_path, document, "--tz", "Europe/Berlin") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"ev-terminal price: {tmp_path / 'session.json'}: {field}: unknown field\n"


CDR = {
    # The fields of a real OCPI 2.2.1 CDR that pricing does not compute, carried over.
    "country_code": "DE",
    "party_id": "EVT",
    "id": "cdr-0001",
    "session_id": "s-0001",
    "cdr_token": {
        "country_code": "DE",
        "party_id": "EVT",
        "uid": "012345678",
        "type": "RFID",
        "contract_id": "DE-EVT-C12345678-X",
    },
    "auth_method": "COMMAND",
    "cdr_location": {
        "id": "LOC1",
        "address": "Example Street 1",
        "city": "Berlin",
        "country": "DEU",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "evse_uid": "EVSE1",
        "evse_id": "DE*EVT*E1",
        "connector_id": "1",
        "connector_standard": "IEC_62196_T2",
        "connector_format": "SOCKET",
        "connector_power_type": "AC_3_PHASE",
    },
    "currency": "EUR",
    "total_cost": {"excl_vat": 99.0, "incl_vat": 99.0},  # stale: re-priced
    "total_energy": 11.0,
    "total_time": 1.667,
    "last_updated": "2024-05-06T19:10:00Z",
    "time_zone": "Europe/Berlin",
    **SESSION,
}


def test_ocpi_format_prints_a_cdr_an_independent_reader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ocpi_types.v2_2_1 import Cdr

    assert _run(tmp_path, CDR) == 0
    bill = json.loads(capsys.readouterr().out)
    assert _run(tmp_path, CDR, "--format", "ocpi") == 0
    text = capsys.readouterr().out
    cdr = json.loads(text, parse_float=Decimal)
    # The totals are the bill's, as exact JSON numbers.
    assert cdr["total_cost"] == {
        "excl_vat": Decimal(bill["total_excl_vat"]["amount"]),
        "incl_vat": Decimal(bill["total_incl_vat"]["amount"]),
    }
    assert cdr["total_cost"]["incl_vat"] == Decimal("6.10")
    assert cdr["total_energy"] == 11
    assert cdr["total_time"] == Decimal("1.666667")  # 100 min
    assert cdr["total_parking_time"] == Decimal("0.666667")  # 40 min
    parts = [cdr["total_fixed_cost"], cdr["total_energy_cost"]]
    assert sum(p["incl_vat"] for p in parts) == cdr["total_cost"]["incl_vat"]
    assert sum(p["excl_vat"] for p in parts) == cdr["total_cost"]["excl_vat"]
    assert "total_time_cost" not in cdr and "total_parking_cost" not in cdr  # free after 20:00
    assert {p["tariff_id"] for p in cdr["charging_periods"]} == {"time-of-day-idle-fee"}
    assert cdr["tariffs"][0]["id"] == "time-of-day-idle-fee"
    assert cdr["cdr_token"] == CDR["cdr_token"] and cdr["id"] == "cdr-0001"
    assert "time_zone" not in cdr  # not a CDR field
    parsed = Cdr.from_dict(json.loads(text))
    assert parsed.total_cost.incl_vat == pytest.approx(6.10)
    assert parsed.cdr_location.evse_id == "DE*EVT*E1"
