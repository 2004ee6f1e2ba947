"""`ev-terminal price`: price a session file under an OCPI tariff file, print JSON.

    ev-terminal price --tariff TARIFF.json --session SESSION.json [--tz Europe/Berlin]

SESSION is shaped like an OCPI 2.2.1 CDR (mod_cdrs "CDR Object", "ChargingPeriod class"):
`start_date_time`, `end_date_time` and `charging_periods`, each with `start_date_time` and
`dimensions` (CdrDimension: `type`, `volume`); other CDR or Session fields are ignored, so a
CDR can be priced as it is. docs/tariffs.md describes the format. Bad input exits 2 with the
offending field named on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from terminal.arguments import ArgumentParser
from terminal.money import Money
from terminal.tariff.engine import ChargingPeriod, OcpiTariff, SessionPrice
from terminal.tariff.model import TariffError

__all__ = ["SessionError", "load_tariff", "main", "parse_session"]

EXIT_BAD_INPUT = 2
_THOUSAND = Decimal(1000)
_SECONDS_PER_HOUR = 3600
# CdrDimensionType values (mod_cdrs "CdrDimensionType enum"); those not listed in a use
# below are accepted and ignored.
_DIMENSIONS = frozenset(
    {
        "CURRENT",
        "ENERGY",
        "ENERGY_EXPORT",
        "ENERGY_IMPORT",
        "MAX_CURRENT",
        "MIN_CURRENT",
        "MAX_POWER",
        "MIN_POWER",
        "PARKING_TIME",
        "POWER",
        "RESERVATION_TIME",
        "STATE_OF_CHARGE",
        "TIME",
    }
)
_POWER_ORDER = ("POWER", "MAX_POWER", "MIN_POWER")  # kW; first present is used
_CURRENT_ORDER = ("CURRENT", "MAX_CURRENT", "MIN_CURRENT")  # A, sum over phases


class SessionError(ValueError):
    """A session file is invalid; `path` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def _fail(path: str, problem: str) -> NoReturn:
    raise SessionError(path, problem)


def _datetime(value: object, path: str) -> datetime:
    if not isinstance(value, str):
        _fail(path, "must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(path, f"{value!r} is not an RFC 3339 date-time")
    # OCPI DateTime (types.asciidoc) is UTC; a missing offset means UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _volume(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        _fail(path, "must be a number")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        _fail(path, "must be a finite, non-negative number")
    return number


def parse_session(text: str | bytes) -> tuple[datetime, list[ChargingPeriod], datetime]:
    """The start, charging periods and end of a session file (see the module docstring)."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _fail("$", f"not valid JSON: {exc}")
    if not isinstance(raw, dict):
        _fail("$", "must be a JSON object")
    for key in ("start_date_time", "end_date_time", "charging_periods"):
        if raw.get(key) is None:
            _fail(key, "is required")
    start = _datetime(raw["start_date_time"], "start_date_time")
    end = _datetime(raw["end_date_time"], "end_date_time")
    if end < start:
        _fail("end_date_time", "is before start_date_time")
    periods_raw = raw["charging_periods"]
    if not isinstance(periods_raw, list):
        _fail("charging_periods", "must be a list of ChargingPeriod")
    starts: list[datetime] = []
    volumes: list[dict[str, Decimal]] = []
    for i, period in enumerate(periods_raw):
        path = f"charging_periods[{i}]"
        if not isinstance(period, dict):
            _fail(path, "must be a ChargingPeriod object")
        if period.get("start_date_time") is None:
            _fail(f"{path}.start_date_time", "is required")
        begins = _datetime(period["start_date_time"], f"{path}.start_date_time")
        if begins < (starts[-1] if starts else start) or begins > end:
            _fail(f"{path}.start_date_time", "is out of order or outside the session")
        starts.append(begins)
        volumes.append(_dimensions(period.get("dimensions"), f"{path}.dimensions"))
    periods: list[ChargingPeriod] = []
    for i, (begins, dims) in enumerate(zip(starts, volumes, strict=True)):
        path = f"charging_periods[{i}].dimensions"
        ends = starts[i + 1] if i + 1 < len(starts) else end
        wh = dims.get("ENERGY", Decimal(0)) * _THOUSAND
        if wh != wh.to_integral_value():
            _fail(path, "ENERGY volume is finer than 1 Wh")
        energy_wh = int(wh)
        time_h, parking_h = dims.get("TIME", Decimal(0)), dims.get("PARKING_TIME", Decimal(0))
        if time_h > 0 and parking_h > 0:
            _fail(path, "both TIME and PARKING_TIME: split the period where charging stops")
        charging = time_h > 0 or (parking_h == 0 and energy_wh > 0)
        power = next((dims[k] for k in _POWER_ORDER if k in dims), None)
        seconds = int((ends - begins).total_seconds())
        if power is not None:
            power_w = int((power * _THOUSAND).to_integral_value(ROUND_HALF_UP))
        else:  # the average over the period
            power_w = energy_wh * _SECONDS_PER_HOUR // seconds if seconds > 0 else 0
        current = next((dims[k] for k in _CURRENT_ORDER if k in dims), Decimal(0))
        periods.append(
            ChargingPeriod(
                start=begins,
                energy_wh=energy_wh,
                power_w=power_w,
                current_ma=int((current * _THOUSAND).to_integral_value(ROUND_HALF_UP)),
                charging=charging,
            )
        )
    return start, periods, end


def _dimensions(raw: object, path: str) -> dict[str, Decimal]:
    if not isinstance(raw, list):
        _fail(path, "must be a list of CdrDimension")
    found: dict[str, Decimal] = {}
    for j, dim in enumerate(raw):
        where = f"{path}[{j}]"
        if not isinstance(dim, dict):
            _fail(where, "must be a CdrDimension object")
        kind = dim.get("type")
        if kind not in _DIMENSIONS:
            _fail(f"{where}.type", f"{kind!r} is not a CdrDimensionType")
        if kind in found:
            _fail(f"{where}.type", f"{kind} given twice")
        found[kind] = _volume(dim.get("volume"), f"{where}.volume")
    return found


def load_tariff(path: Path, *, tz: str = "UTC", locale: str = "en") -> OcpiTariff:
    """Read an OCPI tariff file for a station in zone `tz` (an IANA name).

    Raises `TariffError` (naming the JSON field), `OSError`, or `ValueError` for an unknown
    zone or locale."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    return OcpiTariff.from_json(path.read_bytes(), tz=zone, locale=locale)


def _money(m: Money) -> dict[str, Any]:
    return {"minor": m.minor, "amount": f"{m.to_decimal():f}"}


def _decimal(d: Decimal | None) -> str | None:
    return None if d is None else f"{d.normalize():f}"


def render(tariff: OcpiTariff, priced: SessionPrice) -> dict[str, Any]:
    """The JSON document `ev-terminal price` prints."""
    bill = priced.bill
    exact = list(priced.lines)
    lines: list[Mapping[str, Any]] = []
    for i, line in enumerate(bill.lines):
        entry: dict[str, Any] = {
            "type": line.dimension,
            "quantity": _decimal(line.quantity),
            "unit": line.unit,
            "vat_percent": _decimal(line.vat_percent),
            "excl_vat": _money(line.excl_vat),
        }
        if i < len(exact):  # the priced dimensions come first, adjustments after
            entry["unit_price"] = _decimal(exact[i].price)
            entry["exact_excl_vat"] = _decimal(exact[i].cost)
        lines.append(entry)
    return {
        "tariff_id": tariff.document.id,
        "currency": tariff.currency,
        "total_excl_vat": _money(bill.total_excl_vat),
        "total_vat": _money(bill.total_vat),
        "total_incl_vat": _money(bill.total),
        "dimensions": lines,
        "vat": [
            {"percent": _decimal(v.percent), "base": _money(v.base), "vat": _money(v.vat)}
            for v in bill.vat
        ],
    }


def main(argv: list[str]) -> int:
    """Run `ev-terminal price` with the arguments after `price`; 0 ok, 2 bad input."""
    parser = ArgumentParser(
        prog="ev-terminal price", description="Price a session under an OCPI 2.2.1 tariff."
    )
    parser.add_argument("--tariff", type=Path, required=True, help="OCPI Tariff JSON file")
    parser.add_argument("--session", type=Path, required=True, help="session JSON (CDR shape)")
    parser.add_argument("--tz", default="UTC", help="station time zone (IANA), default UTC")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return EXIT_BAD_INPUT if exc.code else 0
    try:
        tariff = load_tariff(args.tariff, tz=args.tz)
    except TariffError as exc:
        return _bad(f"{args.tariff}: {exc}")
    except OSError as exc:
        return _bad(f"--tariff: {exc}")
    except ValueError as exc:
        return _bad(f"--tz: {exc}")
    try:
        start, periods, end = parse_session(args.session.read_bytes())
    except SessionError as exc:
        return _bad(f"{args.session}: {exc}")
    except OSError as exc:
        return _bad(f"--session: {exc}")
    priced = tariff.price(start=start, periods=periods, end=end)
    sys.stdout.write(json.dumps(render(tariff, priced), indent=2) + "\n")
    return 0


def _bad(message: str) -> int:
    sys.stderr.write(f"ev-terminal price: {message}\n")
    return EXIT_BAD_INPUT
