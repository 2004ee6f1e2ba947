"""Tariff restrictions compiled for fast evaluation, and where along a session they can flip.

OCPI 2.2.1 mod_tariffs, "TariffRestrictions class": every set restriction must hold (AND);
times, dates and weekdays are in the station's local time (`time_zone` of the Location, here
the `tz` the tariff is built with); `end_time` 00:00 means end of day, an `end_time` before
`start_time` wraps past midnight, `end_date` is exclusive; `min_*` bounds are inclusive and
`max_*` bounds exclusive; durations count from the session start.

Time is carried as integer microseconds since the Unix epoch (UTC) and energy as integer Wh,
so that splitting a sample interval at a boundary is exact integer arithmetic.

A restriction `reservation` marks reservation costs; the kiosk has no reservations, so such
elements never match (documented in docs/tariffs.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_CEILING, Decimal

from terminal.tariff.model import Tariff, TariffDimension, TariffRestrictions

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
FAR_FUTURE = 1 << 62  # a time (µs) no session reaches
NO_BOUND = 1 << 62  # an energy (Wh) no session reaches
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MIDNIGHT = time(0, 0)
_THOUSAND = Decimal(1000)


def to_us(at: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (naive input is a bug)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the shell must stamp aware UTC times")
    return (at - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The aware UTC datetime of `us` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def _us_of_day(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * US_PER_SECOND + t.microsecond


def _ceil_wh(kwh: Decimal) -> int:
    # Energy is whole Wh; "at least X kWh" holds for w Wh exactly when w >= ceil(1000 X).
    return int((kwh * _THOUSAND).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One element's restrictions in evaluation units (µs, Wh, W, mA)."""

    reservation: bool = False
    window: tuple[int, int] | None = None  # [start, end) µs of local day; wraps if end <= start
    start_date: date | None = None
    end_date: date | None = None
    weekdays: frozenset[int] | None = None
    min_wh: int | None = None
    max_wh: int | None = None
    min_ma: Decimal | None = None
    max_ma: Decimal | None = None
    min_w: Decimal | None = None
    max_w: Decimal | None = None
    min_us: int | None = None
    max_us: int | None = None

    @property
    def electrical(self) -> bool:
        """Whether the rule depends on the power or current of the moment."""
        return any(v is not None for v in (self.min_ma, self.max_ma, self.min_w, self.max_w))

    @property
    def wall_clock(self) -> bool:
        """Whether the rule depends on the local time, date or weekday."""
        return (
            self.window is not None
            or self.start_date is not None
            or self.end_date is not None
            or self.weekdays is not None
        )

    def static_match(self, local: datetime, duration_us: int, energy_wh: int) -> bool:
        """The restrictions that depend on when and how much (not on power or current)."""
        if self.reservation:
            return False
        if self.window is not None:
            start, end = self.window
            of_day = _us_of_day(local.time())
            if start < end:
                if not start <= of_day < end:
                    return False
            elif not (of_day >= start or of_day < end):
                return False
        day = local.date()
        if self.start_date is not None and day < self.start_date:
            return False
        if self.end_date is not None and day >= self.end_date:
            return False
        if self.weekdays is not None and day.weekday() not in self.weekdays:
            return False
        if self.min_wh is not None and energy_wh < self.min_wh:
            return False
        if self.max_wh is not None and energy_wh >= self.max_wh:
            return False
        if self.min_us is not None and duration_us < self.min_us:
            return False
        return self.max_us is None or duration_us < self.max_us

    def electrical_match(self, power_w: int, current_ma: int) -> bool:
        """min_/max_power (kW) and min_/max_current (A, sum over phases) against the sample."""
        if self.min_w is not None and power_w < self.min_w:
            return False
        if self.max_w is not None and power_w >= self.max_w:
            return False
        if self.min_ma is not None and current_ma < self.min_ma:
            return False
        return self.max_ma is None or current_ma < self.max_ma


def compile_rule(r: TariffRestrictions | None) -> Rule:
    """Translate OCPI restrictions into evaluation units."""
    if r is None:
        return Rule()
    window = None
    if r.start_time is not None or r.end_time is not None:
        start = _us_of_day(r.start_time) if r.start_time is not None else 0
        # A missing end_time, or 00:00, ends the window at the end of the day.
        end = _us_of_day(r.end_time) if r.end_time not in (None, _MIDNIGHT) else US_PER_DAY
        if not (start == 0 and end == US_PER_DAY) and start != end:
            window = (start, end)  # equal ends wrap all the way round: the whole day
    return Rule(
        reservation=r.reservation is not None,
        window=window,
        start_date=r.start_date,
        end_date=r.end_date,
        weekdays=frozenset(d.weekday for d in r.day_of_week) if r.day_of_week else None,
        min_wh=None if r.min_kwh is None else _ceil_wh(r.min_kwh),
        max_wh=None if r.max_kwh is None else _ceil_wh(r.max_kwh),
        min_ma=None if r.min_current is None else r.min_current * _THOUSAND,
        max_ma=None if r.max_current is None else r.max_current * _THOUSAND,
        min_w=None if r.min_power is None else r.min_power * _THOUSAND,
        max_w=None if r.max_power is None else r.max_power * _THOUSAND,
        min_us=None if r.min_duration is None else r.min_duration * US_PER_SECOND,
        max_us=None if r.max_duration is None else r.max_duration * US_PER_SECOND,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """A price component with its place: `element` index, and its global `index`."""

    index: int
    element: int
    dimension: TariffDimension
    price: Decimal
    vat: Decimal | None
    step_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A tariff compiled for pricing: components, rules, and every boundary they imply."""

    tariff: Tariff
    tz: tzinfo
    components: tuple[Component, ...]
    by_dimension: dict[TariffDimension, tuple[int, ...]]  # component indices, element order
    rules: tuple[Rule, ...]
    wall_times: tuple[time, ...]  # local times where a window, date or weekday can flip
    duration_bounds: tuple[int, ...]  # µs after start
    energy_bounds: tuple[int, ...]  # Wh

    @property
    def vat_rate(self) -> Decimal:
        """The VAT rate a min/max price given only excl. VAT is charged at: the rate of the
        priced components when they share one, else the highest (absent VAT counts as 0)."""
        rates = {c.vat or Decimal(0) for c in self.components if c.price}
        return max(rates, default=Decimal(0))

    def local(self, us: int) -> datetime:
        """The station-local datetime of `us`."""
        return from_us(us).astimezone(self.tz)

    def static_ok(self, start_us: int, us: int, energy_wh: int) -> tuple[bool, ...]:
        """Per element: do its time/date/duration/energy restrictions hold at (us, energy)?"""
        local = self.local(us)
        duration = us - start_us
        return tuple(rule.static_match(local, duration, energy_wh) for rule in self.rules)

    def active(
        self,
        dimension: TariffDimension,
        ok: Sequence[bool],
        power_w: int,
        current_ma: int,
    ) -> int:
        """The component of the first element with this dimension whose restrictions all
        hold (mod_tariffs, "Tariff Object"), or -1 when none does (no cost)."""
        for index in self.by_dimension[dimension]:
            element = self.components[index].element
            if ok[element] and self.rules[element].electrical_match(power_w, current_ma):
                return index
        return -1

    def next_energy_bound(self, energy_wh: int) -> int:
        """The smallest energy bound above `energy_wh`, or NO_BOUND."""
        for bound in self.energy_bounds:
            if bound > energy_wh:
                return bound
        return NO_BOUND

    def next_time_bound(self, start_us: int, us: int) -> int:
        """The first instant after `us` where a time-dependent restriction may flip: a
        duration bound, a local wall-clock bound (both readings of an ambiguous local
        time) or a change of UTC offset (DST), whichever comes first."""
        best = FAR_FUTURE
        for bound in self.duration_bounds:
            if start_us + bound > us:
                best = start_us + bound
                break
        if not self.wall_times:
            return best
        today = self.local(us).date()
        for day in (today, today + timedelta(days=1)):
            for wall in self.wall_times:
                for fold in (0, 1):
                    candidate = to_us(
                        datetime.combine(day, wall, tzinfo=self.tz).replace(fold=fold)
                    )
                    if us < candidate < best:
                        best = candidate
        # Tomorrow's local midnight is always a candidate, so best lies within ~25 h; an
        # offset change before it (at most one a day in any zone) is found by bisection.
        if self.offset(us) != self.offset(best):
            best = self.offset_change(us, best)
        return best

    def offset(self, us: int) -> timedelta | None:
        """The UTC offset of the station's zone at `us`."""
        return self.local(us).utcoffset()

    def offset_change(self, lo: int, hi: int) -> int:
        """The first µs in (lo, hi] whose UTC offset differs from that at `lo`."""
        before = self.offset(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.offset(mid) == before:
                lo = mid
            else:
                hi = mid
        return hi


def compile_tariff(tariff: Tariff, tz: tzinfo) -> Plan:
    """Compile a validated OCPI tariff for pricing in the zone `tz`."""
    components: list[Component] = []
    for e, element in enumerate(tariff.elements):
        for pc in element.price_components:
            components.append(
                Component(
                    index=len(components),
                    element=e,
                    dimension=pc.type,
                    price=pc.price,
                    vat=pc.vat,
                    step_size=pc.step_size,
                )
            )
    by_dimension = {
        d: tuple(c.index for c in components if c.dimension is d) for d in TariffDimension
    }
    rules = tuple(compile_rule(e.restrictions) for e in tariff.elements)
    walls: set[time] = set()
    durations: set[int] = set()
    energies: set[int] = set()
    for element, rule in zip(tariff.elements, rules, strict=True):
        r = element.restrictions
        if rule.wall_clock:
            walls.add(_MIDNIGHT)  # dates and weekdays flip at local midnight
        if r is not None:
            walls.update(t for t in (r.start_time, r.end_time) if t is not None)
        durations.update(d for d in (rule.min_us, rule.max_us) if d is not None)
        energies.update(w for w in (rule.min_wh, rule.max_wh) if w is not None)
    return Plan(
        tariff=tariff,
        tz=tz,
        components=tuple(components),
        by_dimension=by_dimension,
        rules=rules,
        wall_times=tuple(sorted(walls)),
        duration_bounds=tuple(sorted(d for d in durations if d > 0)),
        energy_bounds=tuple(sorted(w for w in energies if w > 0)),
    )


def interpolate_energy(t0: int, e0: int, t1: int, e1: int, t: int) -> int:
    """Energy (Wh) at `t` within a sample interval, linear, rounded down; exact at the ends."""
    if t >= t1 or t1 == t0:
        return e1 if t >= t1 else e0
    return e0 + (e1 - e0) * (t - t0) // (t1 - t0)


def time_of_energy(t0: int, e0: int, t1: int, e1: int, energy: int) -> int:
    """The first µs at which `interpolate_energy` reaches `energy` (e0 < energy <= e1)."""
    # ceil((energy - e0) * (t1 - t0) / (e1 - e0)) with integers.
    return t0 + -(-(energy - e0) * (t1 - t0) // (e1 - e0))
