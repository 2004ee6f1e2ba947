"""The OCPI 2.2.1 Tariff object, parsed and validated (OCPI 2.2.1 `mod_tariffs.asciidoc`,
section "Object description": Tariff, TariffElement, PriceComponent, TariffRestrictions, and
`types.asciidoc` for Price, DisplayText, DateTime).

`parse_tariff` takes the JSON text of one Tariff object (numbers parsed as `Decimal`, never
float) and returns frozen values, or raises `TariffError` naming the offending field by its
JSON path, e.g. `elements[0].price_components[1].step_size`.

Validation is strict where a lax reading would misprice: unknown keys are errors (a misspelt
`step-size` must not silently bill per second), prices and VAT must be non-negative, a min
bound must not exceed its max, and one Tariff Element holds at most one Price Component per
dimension (the spec looks components up per dimension; two in one element would be ambiguous).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from terminal.money import MINOR_UNITS

__all__ = [
    "DayOfWeek",
    "DisplayText",
    "Price",
    "PriceComponent",
    "ReservationRestrictionType",
    "Tariff",
    "TariffDimension",
    "TariffElement",
    "TariffError",
    "TariffRestrictions",
    "TariffType",
    "parse_tariff",
    "tariff_from_mapping",
]


class TariffError(ValueError):
    """An OCPI tariff is invalid; `path` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '$'}: {problem}")
        self.path = path
        self.problem = problem


class TariffDimension(StrEnum):
    """OCPI 2.2.1 TariffDimensionType (mod_tariffs "TariffDimensionType enum")."""

    ENERGY = "ENERGY"  # per kWh, step_size multiplier 1 Wh
    FLAT = "FLAT"  # once per session, no step
    PARKING_TIME = "PARKING_TIME"  # per hour not charging, step_size multiplier 1 s
    TIME = "TIME"  # per hour charging, step_size multiplier 1 s


class TariffType(StrEnum):
    """OCPI 2.2.1 TariffType (mod_tariffs "TariffType enum")."""

    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


class DayOfWeek(StrEnum):
    """OCPI 2.2.1 DayOfWeek (mod_tariffs "DayOfWeek enum"), in ISO weekday order."""

    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"

    @property
    def weekday(self) -> int:
        """0 for Monday … 6 for Sunday, as `date.weekday()`."""
        return list(DayOfWeek).index(self)


class ReservationRestrictionType(StrEnum):
    """OCPI 2.2.1 ReservationRestrictionType (mod_tariffs)."""

    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """OCPI Price class (types.asciidoc): an amount excl. VAT and, optionally, incl. VAT."""

    excl_vat: Decimal
    incl_vat: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplayText:
    """OCPI DisplayText class (types.asciidoc): a text in one language (ISO 639-1)."""

    language: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceComponent:
    """OCPI PriceComponent class: a price per unit of one dimension, excl. VAT.

    `vat` is None when the tariff gives none ("no VAT is applicable", which the spec says is
    different from 0 %); `step_size` is in Wh for ENERGY and seconds for the time dimensions."""

    type: TariffDimension
    price: Decimal
    vat: Decimal | None
    step_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffRestrictions:
    """OCPI TariffRestrictions class; every set field must hold (logical AND).

    Times and dates are station-local; `end_time` of 00:00 means end of day and an
    `end_time` before `start_time` wraps past midnight; `end_date` is exclusive."""

    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[DayOfWeek] = frozenset()
    reservation: ReservationRestrictionType | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffElement:
    """OCPI TariffElement class: price components sharing one set of restrictions."""

    price_components: tuple[PriceComponent, ...]
    restrictions: TariffRestrictions | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """OCPI 2.2.1 Tariff object, validated."""

    country_code: str
    party_id: str
    id: str
    currency: str
    elements: tuple[TariffElement, ...]
    last_updated: datetime
    type: TariffType | None = None
    tariff_alt_text: tuple[DisplayText, ...] = ()
    tariff_alt_url: str | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    energy_mix: Mapping[str, Any] | None = None

    def alt_text(self, language: str) -> str | None:
        """The `tariff_alt_text` in `language` (ISO 639-1), or None."""
        for entry in self.tariff_alt_text:
            if entry.language.lower() == language.lower():
                return entry.text
        return None

    def is_valid_at(self, at: datetime) -> bool:
        """Whether `at` lies within `start_date_time` .. `end_date_time` (end exclusive)."""
        if self.start_date_time is not None and at < self.start_date_time:
            return False
        return self.end_date_time is None or at < self.end_date_time


# --- parsing ---------------------------------------------------------------------------

_TIME_RE = re.compile(r"([0-1][0-9]|2[0-3]):[0-5][0-9]")  # mod_tariffs TariffRestrictions
_DATE_RE = re.compile(r"([12][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")

_TARIFF_KEYS = frozenset(
    {
        "country_code",
        "party_id",
        "id",
        "currency",
        "type",
        "tariff_alt_text",
        "tariff_alt_url",
        "min_price",
        "max_price",
        "elements",
        "start_date_time",
        "end_date_time",
        "energy_mix",
        "last_updated",
    }
)
_RESTRICTION_KEYS = frozenset(
    {
        "start_time",
        "end_time",
        "start_date",
        "end_date",
        "min_kwh",
        "max_kwh",
        "min_current",
        "max_current",
        "min_power",
        "max_power",
        "min_duration",
        "max_duration",
        "day_of_week",
        "reservation",
    }
)


def _fail(path: str, problem: str) -> NoReturn:
    raise TariffError(path, problem)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _reject_constant(name: str) -> NoReturn:
    _fail("", f"{name} is not a JSON number")


def parse_tariff(text: str | bytes) -> Tariff:
    """Parse the JSON text of one OCPI 2.2.1 Tariff object; numbers become `Decimal`."""
    try:
        raw = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        _fail("", f"not valid JSON: {exc}")
    return tariff_from_mapping(raw)


def tariff_from_mapping(raw: object) -> Tariff:
    """Validate an already decoded Tariff object (floats are refused: parse with Decimal)."""
    obj = _object(raw, "", _TARIFF_KEYS)
    currency = _string(obj, "currency", "", max_len=3, required=True)
    if currency not in MINOR_UNITS:
        _fail("currency", f"unknown or unsupported ISO 4217 currency {currency!r}")
    elements_raw = _required(obj, "elements", "")
    if not isinstance(elements_raw, list) or not elements_raw:
        _fail("elements", "must be a non-empty list of TariffElement")
    elements = tuple(_element(e, f"elements[{i}]") for i, e in enumerate(elements_raw))
    min_price = _price(obj.get("min_price"), "min_price")
    max_price = _price(obj.get("max_price"), "max_price")
    if min_price is not None and max_price is not None:
        if min_price.excl_vat > max_price.excl_vat:
            _fail("min_price.excl_vat", "is above max_price.excl_vat")
        if (
            min_price.incl_vat is not None
            and max_price.incl_vat is not None
            and min_price.incl_vat > max_price.incl_vat
        ):
            _fail("min_price.incl_vat", "is above max_price.incl_vat")
    start = _datetime(obj.get("start_date_time"), "start_date_time")
    end = _datetime(obj.get("end_date_time"), "end_date_time")
    if start is not None and end is not None and end <= start:
        _fail("end_date_time", "is not after start_date_time")
    type_raw = obj.get("type")
    alt_raw = obj.get("tariff_alt_text", [])
    if not isinstance(alt_raw, list):
        _fail("tariff_alt_text", "must be a list of DisplayText")
    energy_mix = obj.get("energy_mix")
    if energy_mix is not None and not isinstance(energy_mix, dict):
        _fail("energy_mix", "must be an EnergyMix object")
    last_updated = _datetime(_required(obj, "last_updated", ""), "last_updated")
    assert last_updated is not None
    return Tariff(
        country_code=_string(obj, "country_code", "", max_len=2, required=True),
        party_id=_string(obj, "party_id", "", max_len=3, required=True),
        id=_string(obj, "id", "", max_len=36, required=True),
        currency=currency,
        type=None if type_raw is None else _enum(TariffType, type_raw, "type"),
        tariff_alt_text=tuple(
            _display_text(t, f"tariff_alt_text[{i}]") for i, t in enumerate(alt_raw)
        ),
        tariff_alt_url=_string(obj, "tariff_alt_url", "", max_len=None, required=False) or None,
        min_price=min_price,
        max_price=max_price,
        elements=elements,
        start_date_time=start,
        end_date_time=end,
        energy_mix=energy_mix,
        last_updated=last_updated,
    )


def _object(raw: object, path: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        _fail(path, "must be a JSON object")
    for key in raw:
        if key not in keys:
            _fail(_join(path, str(key)), "unknown field")
    return raw


def _required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj or obj[key] is None:
        _fail(_join(path, key), "is required")
    return obj[key]


def _string(
    obj: Mapping[str, Any], key: str, path: str, *, max_len: int | None, required: bool
) -> str:
    where = _join(path, key)
    value = _required(obj, key, path) if required else obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or (required and not value):
        _fail(where, "must be a non-empty string")
    if max_len is not None and len(value) > max_len:
        _fail(where, f"longer than {max_len} characters")
    return value


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: object, path: str) -> _E:
    if not isinstance(value, str):
        _fail(path, f"must be one of {', '.join(kind)}")
    try:
        return kind(value)
    except ValueError:
        _fail(path, f"{value!r} is not one of {', '.join(kind)}")


def _number(value: object, path: str, *, minimum: Decimal | None = Decimal(0)) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        _fail(path, "must be a number")
    number = Decimal(value)
    if not number.is_finite():
        _fail(path, "must be a finite number")
    if minimum is not None and number < minimum:
        _fail(path, f"must not be below {minimum}")
    return number


def _integer(value: object, path: str) -> int:
    number = _number(value, path)
    if number != number.to_integral_value():
        _fail(path, "must be a whole number")
    return int(number)


def _datetime(value: object, path: str) -> datetime | None:
    """OCPI DateTime (types.asciidoc): RFC 3339, UTC; a missing offset means UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        _fail(path, "must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(path, f"{value!r} is not an RFC 3339 date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _price(raw: object, path: str) -> Price | None:
    if raw is None:
        return None
    obj = _object(raw, path, frozenset({"excl_vat", "incl_vat"}))
    excl = _number(_required(obj, "excl_vat", path), _join(path, "excl_vat"))
    incl_raw = obj.get("incl_vat")
    incl = None if incl_raw is None else _number(incl_raw, _join(path, "incl_vat"))
    if incl is not None and incl < excl:
        _fail(_join(path, "incl_vat"), "is below excl_vat")
    return Price(excl_vat=excl, incl_vat=incl)


def _display_text(raw: object, path: str) -> DisplayText:
    obj = _object(raw, path, frozenset({"language", "text"}))
    return DisplayText(
        language=_string(obj, "language", path, max_len=2, required=True),
        text=_string(obj, "text", path, max_len=512, required=True),
    )


def _element(raw: object, path: str) -> TariffElement:
    obj = _object(raw, path, frozenset({"price_components", "restrictions"}))
    comps_path = _join(path, "price_components")
    comps_raw = _required(obj, "price_components", path)
    if not isinstance(comps_raw, list) or not comps_raw:
        _fail(comps_path, "must be a non-empty list of PriceComponent")
    components: list[PriceComponent] = []
    for i, c in enumerate(comps_raw):
        component = _component(c, f"{comps_path}[{i}]")
        if any(seen.type == component.type for seen in components):
            _fail(f"{comps_path}[{i}].type", f"a second {component.type} component")
        components.append(component)
    restrictions_raw = obj.get("restrictions")
    restrictions = (
        None
        if restrictions_raw is None
        else _restrictions(restrictions_raw, _join(path, "restrictions"))
    )
    return TariffElement(price_components=tuple(components), restrictions=restrictions)


def _component(raw: object, path: str) -> PriceComponent:
    obj = _object(raw, path, frozenset({"type", "price", "vat", "step_size"}))
    kind = _enum(TariffDimension, _required(obj, "type", path), _join(path, "type"))
    price = _number(_required(obj, "price", path), _join(path, "price"))
    vat_raw = obj.get("vat")
    vat = None if vat_raw is None else _number(vat_raw, _join(path, "vat"))
    if vat is not None and vat > 100:
        _fail(_join(path, "vat"), "must be a percentage of at most 100")
    step = _integer(_required(obj, "step_size", path), _join(path, "step_size"))
    return PriceComponent(type=kind, price=price, vat=vat, step_size=step)


def _restrictions(raw: object, path: str) -> TariffRestrictions:
    obj = _object(raw, path, _RESTRICTION_KEYS)

    def clock(key: str) -> time | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
            _fail(_join(path, key), "must be a time of day HH:MM (24 h, leading zeros)")
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))

    def day(key: str) -> date | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
            _fail(_join(path, key), "must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            _fail(_join(path, key), f"{value!r} is not a calendar date")

    def number(key: str) -> Decimal | None:
        value = obj.get(key)
        return None if value is None else _number(value, _join(path, key))

    def seconds(key: str) -> int | None:
        value = obj.get(key)
        return None if value is None else _integer(value, _join(path, key))

    days_raw = obj.get("day_of_week", [])
    if not isinstance(days_raw, list):
        _fail(_join(path, "day_of_week"), "must be a list of DayOfWeek")
    days = frozenset(
        _enum(DayOfWeek, d, f"{_join(path, 'day_of_week')}[{i}]") for i, d in enumerate(days_raw)
    )
    reservation_raw = obj.get("reservation")
    result = TariffRestrictions(
        start_time=clock("start_time"),
        end_time=clock("end_time"),
        start_date=day("start_date"),
        end_date=day("end_date"),
        min_kwh=number("min_kwh"),
        max_kwh=number("max_kwh"),
        min_current=number("min_current"),
        max_current=number("max_current"),
        min_power=number("min_power"),
        max_power=number("max_power"),
        min_duration=seconds("min_duration"),
        max_duration=seconds("max_duration"),
        day_of_week=days,
        reservation=None
        if reservation_raw is None
        else _enum(ReservationRestrictionType, reservation_raw, _join(path, "reservation")),
    )
    for low, high in (
        ("min_kwh", "max_kwh"),
        ("min_current", "max_current"),
        ("min_power", "max_power"),
        ("min_duration", "max_duration"),
    ):
        lo, hi = getattr(result, low), getattr(result, high)
        if lo is not None and hi is not None and lo > hi:
            _fail(_join(path, low), f"is above {high}")
    if (
        result.start_date is not None
        and result.end_date is not None
        and result.end_date <= result.start_date
    ):
        _fail(_join(path, "end_date"), "is not after start_date (end_date is exclusive)")
    return result
