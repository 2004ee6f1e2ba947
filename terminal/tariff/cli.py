"""`ev-terminal price`: price a session file under an OCPI tariff file, print JSON.

    ev-terminal price --tariff TARIFF.json --session SESSION.json [--tz Europe/Berlin]
                      [--format bill|ocpi]

SESSION is shaped like an OCPI 2.2.1 CDR (mod_cdrs "CDR Object", "ChargingPeriod class"):
`start_date_time`, `end_date_time` and `charging_periods`, each with `start_date_time` and
`dimensions` (CdrDimension: `type`, `volume`). The other fields of a CDR or Session object are
accepted (not used), so a CDR can be priced as it is, and `time_zone` (IANA, as in the OCPI
Location object) names the station's zone; any other field is an error, so a misspelt field
is never silently ignored. The zone is required (`--tz` or `time_zone`) when the tariff has
time or day restrictions. `--format ocpi` prints the result as an OCPI 2.2.1 CDR (`total_cost`,
`total_energy_cost`, ...). docs/tariffs.md describes both formats. Bad input exits 2 with
one line on stderr naming the offending field.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from terminal.arguments import ArgumentParser
from terminal.core.billing import Bill
from terminal.money import Money
from terminal.tariff.engine import ChargingPeriod, OcpiTariff, SessionPrice
from terminal.tariff.model import Tariff, TariffError, parse_tariff

__all__ = ["SessionError", "SessionFile", "load_tariff", "main", "parse_session", "render_ocpi"]

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
# Fields of the OCPI 2.2.1 CDR object (mod_cdrs "CDR Object").
_CDR_FIELDS = frozenset(
    {
        "country_code",
        "party_id",
        "id",
        "start_date_time",
        "end_date_time",
        "session_id",
        "cdr_token",
        "auth_method",
        "authorization_reference",
        "cdr_location",
        "meter_id",
        "currency",
        "tariffs",
        "charging_periods",
        "signed_data",
        "total_cost",
        "total_fixed_cost",
        "total_energy",
        "total_energy_cost",
        "total_time",
        "total_time_cost",
        "total_parking_time",
        "total_parking_cost",
        "total_reservation_cost",
        "remark",
        "invoice_reference_id",
        "credit",
        "credit_reference_id",
        "home_charging_compensation",
        "last_updated",
    }
)
# ... and those of the Session object (mod_sessions "Session Object"), plus the Location's
# `time_zone` (mod_locations): what a session file may hold.
_SESSION_FIELDS = _CDR_FIELDS | frozenset(
    {
        "country_code",
        "party_id",
        "id",
        "start_date_time",
        "end_date_time",
        "session_id",
        "kwh",
        "cdr_token",
        "auth_method",
        "authorization_reference",
        "cdr_location",
        "location_id",
        "evse_uid",
        "connector_id",
        "meter_id",
        "currency",
        "tariffs",
        "charging_periods",
        "signed_data",
        "total_cost",
        "total_fixed_cost",
        "total_energy",
        "total_energy_cost",
        "total_time",
        "total_time_cost",
        "total_parking_time",
        "total_parking_cost",
        "total_reservation_cost",
        "remark",
        "invoice_reference_id",
        "credit",
        "credit_reference_id",
        "home_charging_compensation",
        "status",
        "last_updated",
        "time_zone",
    }
)
_PERIOD_FIELDS = frozenset({"start_date_time", "dimensions", "tariff_id"})  # ChargingPeriod
_DIMENSION_FIELDS = frozenset({"type", "volume"})  # CdrDimension
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


def _known(obj: Mapping[str, Any], fields: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in fields:
            _fail(f"{path}.{key}" if path else str(key), "unknown field")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFile:
    """A parsed session file: what the engine prices, and the zone and currency it names."""

    start: datetime
    periods: list[ChargingPeriod]
    end: datetime
    time_zone: str | None
    currency: str | None
    raw: dict[str, Any]
    raw_periods: list[dict[str, Any]]


def parse_session(text: str | bytes) -> SessionFile:
    """A session file, validated (see the module docstring); raises `SessionError`."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _fail("$", f"not valid JSON: {exc}")
    if not isinstance(raw, dict):
        _fail("$", "must be a JSON object")
    _known(raw, _SESSION_FIELDS, "")
    zone = raw.get("time_zone")
    if zone is not None and not isinstance(zone, str):
        _fail("time_zone", "must be an IANA time zone name such as Europe/Berlin")
    currency = raw.get("currency")
    if currency is not None and not isinstance(currency, str):
        _fail("currency", "must be an ISO 4217 code")
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
        _known(period, _PERIOD_FIELDS, path)
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
    return SessionFile(
        start=start,
        periods=periods,
        end=end,
        time_zone=zone,
        currency=currency,
        raw=raw,
        raw_periods=periods_raw,
    )


def _dimensions(raw: object, path: str) -> dict[str, Decimal]:
    if not isinstance(raw, list):
        _fail(path, "must be a list of CdrDimension")
    found: dict[str, Decimal] = {}
    for j, dim in enumerate(raw):
        where = f"{path}[{j}]"
        if not isinstance(dim, dict):
            _fail(where, "must be a CdrDimension object")
        _known(dim, _DIMENSION_FIELDS, where)
        kind = dim.get("type")
        if kind not in _DIMENSIONS:
            _fail(f"{where}.type", f"{kind!r} is not a CdrDimensionType")
        if kind in found:
            _fail(f"{where}.type", f"{kind} given twice")
        found[kind] = _volume(dim.get("volume"), f"{where}.volume")
    return found


def load_tariff(path: Path, *, tz: str = "UTC") -> OcpiTariff:
    """Read an OCPI tariff file for a station in zone `tz` (an IANA name).

    Raises `TariffError` (naming the JSON field), `OSError`, or `ValueError` for an unknown
    zone."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    return OcpiTariff.from_json(path.read_bytes(), tz=zone)


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


def _needs_zone(tariff: Tariff) -> str | None:
    """The first restriction that reads the station's local time, as a JSON path, or None."""
    local = ("start_time", "end_time", "start_date", "end_date", "day_of_week")
    for i, element in enumerate(tariff.elements):
        r = element.restrictions
        if r is None:
            continue
        for name in local:
            if getattr(r, name):
                return f"elements[{i}].restrictions.{name}"
    return None


_CENT_PATTERN = re.compile(r'"@@(-?[0-9.]+)@@"')


def _number(value: object) -> str:
    """JSON numbers written exactly (never through float): `_ocpi_json` unwraps them."""
    if isinstance(value, Decimal):
        return f"@@{value:f}@@"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _ocpi_json(document: Mapping[str, Any]) -> str:
    return _CENT_PATTERN.sub(r"\1", json.dumps(document, indent=2, default=_number))


def _price(excl: Money, incl: Money) -> dict[str, Decimal]:
    """An OCPI Price class (types.asciidoc): amounts excl. and incl. VAT."""
    return {"excl_vat": excl.to_decimal(), "incl_vat": incl.to_decimal()}


def _dimension_cost(bill: Bill, dimension: str) -> dict[str, Decimal] | None:
    lines = [line for line in bill.lines if line.dimension == dimension]
    if not lines:
        return None
    zero = Money.zero(bill.total.currency)
    excl = sum((line.excl_vat for line in lines), zero)
    return _price(excl, sum((line.incl_vat for line in lines), zero))


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_ocpi(
    tariff_document: Mapping[str, Any],
    tariff: OcpiTariff,
    session: SessionFile,
    priced: SessionPrice,
) -> dict[str, Any]:
    """The priced session as an OCPI 2.2.1 CDR (mod_cdrs "CDR Object"): its times, the tariff,
    the charging periods with their `tariff_id`, and the totals. CDR fields of the session
    file that pricing does not compute (party, location, token, authorization) are carried
    over, so a CDR comes back re-priced; a bare session file has none of them. Costs are the
    bill's rounded amounts; `total_cost` includes the min/max price adjustments, which belong
    to no dimension."""
    bill = priced.bill
    hours = Decimal(3600)
    quantum = Decimal("0.000001")
    ends = [p.start for p in session.periods[1:]] + [session.end]
    second = timedelta(seconds=1)
    parked = sum(
        ((end - p.start) // second for p, end in zip(session.periods, ends, strict=True)
         if not p.charging),
        0,
    )  # fmt: skip
    cdr: dict[str, Any] = {key: v for key, v in session.raw.items() if key in _CDR_FIELDS}
    for computed in (
        "total_fixed_cost",
        "total_energy_cost",
        "total_time_cost",
        "total_parking_time",
        "total_parking_cost",
        "total_reservation_cost",
    ):
        cdr.pop(computed, None)
    cdr |= {
        "start_date_time": _utc(session.start),
        "end_date_time": _utc(session.end),
        "currency": tariff.currency,
        "tariffs": [tariff_document],
        "charging_periods": [
            {**raw, "tariff_id": tariff.document.id} for raw in session.raw_periods
        ],
        "total_cost": _price(bill.total_excl_vat, bill.total),
        "total_energy": Decimal(sum(p.energy_wh for p in session.periods)) / _THOUSAND,
        "total_time": (Decimal((session.end - session.start) // second) / hours).quantize(quantum),
    }
    optional = {
        "total_fixed_cost": _dimension_cost(bill, "FLAT"),
        "total_energy_cost": _dimension_cost(bill, "ENERGY"),
        "total_time_cost": _dimension_cost(bill, "TIME"),
        "total_parking_time": (Decimal(parked) / hours).quantize(quantum) if parked else None,
        "total_parking_cost": _dimension_cost(bill, "PARKING_TIME"),
    }
    cdr.update({key: value for key, value in optional.items() if value is not None})
    return cdr


def main(argv: list[str]) -> int:
    """Run `ev-terminal price` with the arguments after `price`; 0 ok, 2 bad input."""
    parser = ArgumentParser(
        prog="ev-terminal price", description="Price a session under an OCPI 2.2.1 tariff."
    )
    parser.add_argument("--tariff", type=Path, required=True, help="OCPI Tariff JSON file")
    parser.add_argument("--session", type=Path, required=True, help="session JSON (CDR shape)")
    parser.add_argument(
        "--tz",
        help="station time zone (IANA, e.g. Europe/Berlin); required when the tariff has time "
        "or day restrictions and the session file gives no time_zone",
    )
    parser.add_argument(
        "--format",
        choices=("bill", "ocpi"),
        default="bill",
        help="bill: the itemized bill (default); ocpi: an OCPI 2.2.1 CDR",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return EXIT_BAD_INPUT if exc.code else 0
    try:
        tariff_text = args.tariff.read_bytes()
    except OSError as exc:
        return _bad(f"--tariff: {exc.strerror or exc}: {args.tariff}")
    try:
        document = parse_tariff(tariff_text)
    except TariffError as exc:
        return _bad(f"{args.tariff}: {exc}")
    try:
        session = parse_session(args.session.read_bytes())
    except SessionError as exc:
        return _bad(f"{args.session}: {exc}")
    except OSError as exc:
        return _bad(f"--session: {exc.strerror or exc}: {args.session}")
    if args.tz and session.time_zone and args.tz != session.time_zone:
        return _bad(f"--tz: {args.tz} differs from the session's time_zone {session.time_zone}")
    zone = args.tz or session.time_zone
    where = "--tz" if args.tz else f"{args.session}: time_zone"
    if zone is None:
        needs = _needs_zone(document)
        if needs is not None:
            return _bad(
                f"--tz: the tariff's {needs} is in the station's local time: give its zone "
                "with --tz (e.g. Europe/Berlin) or time_zone in the session file"
            )
        zone = "UTC"  # nothing in the tariff reads the local time
    if session.currency is not None and session.currency != document.currency:
        return _bad(
            f"{args.session}: currency: {session.currency} differs from the tariff's "
            f"{document.currency}"
        )
    try:
        tariff = OcpiTariff(document=document, tz=ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return _bad(f"{where}: unknown time zone {zone!r}")
    priced = tariff.price(start=session.start, periods=session.periods, end=session.end)
    if args.format == "ocpi":
        raw = json.loads(tariff_text, parse_float=Decimal)
        sys.stdout.write(_ocpi_json(render_ocpi(raw, tariff, session, priced)) + "\n")
    else:
        sys.stdout.write(json.dumps(render(tariff, priced), indent=2) + "\n")
    return 0


def _bad(message: str) -> int:
    sys.stderr.write(f"ev-terminal price: {message}\n")
    return EXIT_BAD_INPUT
