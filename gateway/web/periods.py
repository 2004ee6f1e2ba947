"""The periods the console reports over: today, this week (ISO 8601: Monday first), this month,
or a range of whole days, in a named time zone (IANA, `zoneinfo`). A period is a half-open
interval of UTC instants `[start, end)`, so a movement belongs to exactly one period of a
partition, daylight-saving changes included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NAMES = ("today", "week", "month", "range")
MAX_DAYS = 366


class PeriodError(ValueError):
    """A period the console cannot report over; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    name: str
    zone: ZoneInfo
    first: date  # the first local day, inclusive
    last: date  # the last local day, inclusive

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), self.zone).astimezone(UTC)

    @property
    def hourly(self) -> bool:
        """One day is charted by the hour, longer periods by the day."""
        return self.first == self.last

    def bucket_of(self, at: datetime) -> datetime:
        """The local hour or day an instant falls in (its start, aware)."""
        local = at.astimezone(self.zone)
        if self.hourly:
            return local.replace(minute=0, second=0, microsecond=0)
        return datetime.combine(local.date(), time(), self.zone)

    def buckets(self) -> list[datetime]:
        """The chart's buckets: the local hours of the day, or the local days of the period
        (their starts, aware, ascending; each as `bucket_of` names it)."""
        if self.hourly:
            hours = int((self.end - self.start) / timedelta(hours=1))
            return [(self.start + timedelta(hours=k)).astimezone(self.zone) for k in range(hours)]
        days = (self.last - self.first).days + 1
        return [
            datetime.combine(self.first + timedelta(days=k), time(), self.zone) for k in range(days)
        ]

    def query(self) -> dict[str, str]:
        """The query parameters that name this period again (links, CSV, live updates)."""
        out = {"period": self.name, "tz": self.zone.key}
        if self.name == "range":
            out.update({"from": self.first.isoformat(), "to": self.last.isoformat()})
        return out


def parse_period(params: Mapping[str, str], now: datetime) -> Period:
    """The period named by the query parameters `period`, `tz`, `from`, `to` (defaults: this
    month in UTC)."""
    name = params.get("period") or "month"
    if name not in NAMES:
        raise PeriodError(f"period: one of {', '.join(NAMES)}")
    tz_name = params.get("tz") or "UTC"
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(
            f"tz: {tz_name!r} is not a time zone name (such as Europe/Berlin)"
        ) from None
    today = now.astimezone(zone).date()
    if name == "today":
        return Period(name=name, zone=zone, first=today, last=today)
    if name == "week":
        monday = today - timedelta(days=today.weekday())
        return Period(name=name, zone=zone, first=monday, last=monday + timedelta(days=6))
    if name == "month":
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return Period(name=name, zone=zone, first=first, last=following - timedelta(days=1))
    first, last = _day(params, "from"), _day(params, "to")
    if last < first:
        raise PeriodError("to: before from")
    if (last - first).days >= MAX_DAYS:
        raise PeriodError(f"to: a range is at most {MAX_DAYS} days")
    return Period(name=name, zone=zone, first=first, last=last)


def _day(params: Mapping[str, str], key: str) -> date:
    value = params.get(key) or ""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PeriodError(f"{key}: {value!r} is not a date (YYYY-MM-DD)") from None
