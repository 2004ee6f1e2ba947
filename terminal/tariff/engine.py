"""Pricing a session under an OCPI 2.2.1 tariff: incremental, and by full recomputation.

Semantics (OCPI 2.2.1 mod_tariffs "Tariff Object", "TariffRestrictions class",
"PriceComponent class"; mod_cdrs "step_size"; errata on branch release-2.2.1-bugfixes):

- For each dimension separately, the active price component is that of the first tariff
  element that has a component of the dimension and whose restrictions all hold at that
  moment; with none, the dimension costs nothing.
- ENERGY is priced per Wh delivered; TIME per µs while charging; PARKING_TIME per µs while
  not charging; FLAT once per session, from the first moment a FLAT component is active.
- A sample interval is split wherever a restriction can flip (local time of day, local
  midnight, DST change, session duration bounds, kWh bounds), energy interpolated linearly
  in whole Wh; power and current restrictions use the values of the sample.
- step_size (mod_cdrs "step_size"): the total of ENERGY over the session is rounded up to the
  step of the last ENERGY component used; for time, only the dimension (TIME or PARKING_TIME)
  of the last time-based period with a price component is rounded up, its session total, to
  the step of that last component; the extra is billed at that component's price.
- Each line is costed exactly in `Decimal` (excl. VAT, for the OCPI CDR), and billed by the
  rule in `terminal.core.billing`: its quantity in the shown unit (kWh, minute, session) times
  the shown unit price incl. VAT, rounded once; VAT taken out per rate.
- min_price / max_price bound the total excl. and incl. VAT (both apply, mod_tariffs note);
  the difference is an adjustment line per VAT rate (`MIN_PRICE` / `MAX_PRICE`), spread over
  the rates in proportion to their gross so the VAT breakdown stays true. min_price applies to
  every session, with energy or without (mod_tariffs: "a Charging Session with this tariff will
  at least cost this amount"); the kiosk still voids a session that delivered no energy. A
  min/max price given only excl. VAT carries the tariff's VAT rate (`Plan.vat_rate`).

The incremental `OcpiMeterage.advance` does O(1) work per sample (amortized): it carries the
restriction state valid until the next time or energy bound and re-evaluates only when a
sample crosses one. `price_periods` recomputes a whole session from its charging periods by
enumerating every boundary afresh; the two agree exactly (a hypothesis property).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from itertools import pairwise

from terminal.core.billing import (
    Bill,
    BillLine,
    gross_unit_price,
    line_amount,
    make_bill,
)
from terminal.core.words import Phrase
from terminal.money import Money, minor_exponent
from terminal.tariff.display import PriceDisplay, price_display
from terminal.tariff.model import Price, Tariff, TariffDimension, parse_tariff
from terminal.tariff.rules import (
    US_PER_SECOND,
    Plan,
    compile_tariff,
    interpolate_energy,
    time_of_energy,
    to_us,
)

__all__ = [
    "ChargingPeriod",
    "OcpiMeterage",
    "OcpiTariff",
    "PricedLine",
    "SessionPrice",
    "price_periods",
]

_WH_PER_KWH = Decimal(1000)
_US_PER_HOUR = Decimal(3600 * US_PER_SECOND)
_US_PER_MINUTE = Decimal(60 * US_PER_SECOND)
_MINUTES_PER_HOUR = Decimal(60)
_HOURS_QUANTUM = Decimal("0.000001")  # BillLine.quantity in hours: display only
_HUNDRED = Decimal(100)
_MAX_NUDGES = 10_000  # a bound is met within a few minor units of the estimate
_E = TariffDimension.ENERGY
_F = TariffDimension.FLAT
_T = TariffDimension.TIME
_P = TariffDimension.PARKING_TIME
_UNITS = {_E: "kWh", _T: "h", _P: "h", _F: "session"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingPeriod:
    """One period of a session (the shape of an OCPI CDR ChargingPeriod): it starts at
    `start` and ends where the next period starts, the last at the session end; during it
    `energy_wh` was delivered, at `power_w` and `current_ma` (sum over phases), and the
    vehicle was charging (TIME) or not (PARKING_TIME)."""

    start: datetime
    energy_wh: int
    power_w: int
    current_ma: int
    charging: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PricedLine:
    """One priced dimension at one unit price, exact (before rounding).

    `units` are Wh for ENERGY, µs for TIME and PARKING_TIME (step rounding included), 1 for
    FLAT; `cost` is excl. VAT in major units, exact but for one division by the unit."""

    dimension: TariffDimension
    price: Decimal
    vat: Decimal | None
    units: int
    cost: Decimal

    @property
    def quantity(self) -> Decimal:
        """kWh for ENERGY, hours for the time dimensions (to the µh), 1 for FLAT."""
        if self.dimension is _E:
            return Decimal(self.units) / _WH_PER_KWH
        if self.dimension is _F:
            return Decimal(1)
        return (Decimal(self.units) / _US_PER_HOUR).quantize(_HOURS_QUANTUM, ROUND_HALF_UP)

    def unit_price(self, currency: str) -> Decimal:
        """The shown unit price incl. VAT: per kWh, per minute, or per session."""
        if self.dimension is _F:
            return gross_unit_price(self.price, self.vat, currency, per_session=True)
        if self.dimension is _E:
            return gross_unit_price(self.price, self.vat, currency)
        return gross_unit_price(self.price / _MINUTES_PER_HOUR, self.vat, currency, per_minute=True)

    def incl_vat(self, currency: str) -> Money:
        """What the line costs: its quantity in the shown unit * the shown unit price."""
        if self.dimension is _F:
            return Money.from_decimal(self.unit_price(currency), currency)
        per = _WH_PER_KWH if self.dimension is _E else _US_PER_MINUTE
        return line_amount(Decimal(self.units) / per, self.unit_price(currency), currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPrice:
    """A session priced: the exact lines and the rounded, bounded bill."""

    lines: tuple[PricedLine, ...]
    bill: Bill

    @property
    def exact_excl_vat(self) -> Decimal:
        """Sum of the exact line costs excl. VAT, before rounding and min/max price."""
        return sum((line.cost for line in self.lines), Decimal(0))

    @property
    def exact_incl_vat(self) -> Decimal:
        """Sum of the exact line costs incl. VAT (absent VAT counts as none), unrounded."""
        return sum(
            (line.cost * (1 + (line.vat or 0) / _HUNDRED) for line in self.lines), Decimal(0)
        )


@dataclass(frozen=True, slots=True)
class _Usage:
    """What a session used, per component, before step rounding."""

    units: tuple[int, ...]  # per component: Wh or µs
    flat: int = -1  # the FLAT component charged, if any
    last_energy: int = -1  # the last ENERGY component that priced energy
    last_time: int = -1  # the last TIME / PARKING_TIME component that priced time
    energy_wh: int = 0  # energy delivered in the session


class _Tally:
    """A mutable `_Usage` for folding segments into."""

    __slots__ = ("energy_wh", "flat", "last_energy", "last_time", "units")

    def __init__(self, usage: _Usage) -> None:
        self.units = list(usage.units)
        self.flat = usage.flat
        self.last_energy = usage.last_energy
        self.last_time = usage.last_time
        self.energy_wh = usage.energy_wh

    def freeze(self) -> _Usage:
        return _Usage(
            units=tuple(self.units),
            flat=self.flat,
            last_energy=self.last_energy,
            last_time=self.last_time,
            energy_wh=self.energy_wh,
        )

    def add(
        self,
        plan: Plan,
        ok: Sequence[bool],
        *,
        power_w: int,
        current_ma: int,
        charging: bool,
        duration_us: int,
        energy_wh: int,
    ) -> None:
        """Fold in one segment over which every restriction but power/current is constant."""
        if self.flat < 0:
            self.flat = plan.active(_F, ok, power_w, current_ma)
        if energy_wh > 0:
            self.energy_wh += energy_wh
            index = plan.active(_E, ok, power_w, current_ma)
            if index >= 0:
                self.units[index] += energy_wh
                self.last_energy = index
        if duration_us > 0:
            index = plan.active(_T if charging else _P, ok, power_w, current_ma)
            if index >= 0:
                self.units[index] += duration_us
                self.last_time = index


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _price(plan: Plan, usage: _Usage) -> SessionPrice:
    """Apply step_size, cost each line exactly, round by the billing rule, bound by
    min_price / max_price."""
    units = list(usage.units)
    for last, unit in ((usage.last_energy, 1), (usage.last_time, US_PER_SECOND)):
        if last < 0:
            continue
        component = plan.components[last]
        # step_size 0 (seen on FLAT in the spec's examples) bills per single unit.
        step = max(component.step_size, 1) * unit
        same = plan.by_dimension[component.dimension]
        total = sum(units[i] for i in same)
        units[last] += _round_up(total, step) - total
    grouped: dict[tuple[TariffDimension, Decimal, Decimal | None], int] = {}
    for component in plan.components:
        if component.dimension is _F or units[component.index] == 0:
            continue
        key = (component.dimension, component.price, component.vat)
        grouped[key] = grouped.get(key, 0) + units[component.index]
    lines: list[PricedLine] = []
    if usage.flat >= 0:
        flat = plan.components[usage.flat]
        lines.append(
            PricedLine(dimension=_F, price=flat.price, vat=flat.vat, units=1, cost=flat.price)
        )
    for (dimension, price, vat), amount in grouped.items():
        per = _WH_PER_KWH if dimension is _E else _US_PER_HOUR
        cost = price * amount / per
        lines.append(PricedLine(dimension=dimension, price=price, vat=vat, units=amount, cost=cost))
    currency = plan.tariff.currency
    bill_lines = tuple(
        BillLine(
            dimension=line.dimension.value,
            quantity=line.quantity,
            unit=_UNITS[line.dimension],
            incl_vat=line.incl_vat(currency),
            vat_percent=line.vat if line.vat is not None else Decimal(0),
            unit_price=line.unit_price(currency),
        )
        for line in lines
    )
    bill = make_bill(bill_lines, currency)
    tariff = plan.tariff
    if tariff.min_price is not None:
        bill = _at_least(bill, tariff.min_price, currency, plan.vat_rate)
    if tariff.max_price is not None:
        bill = _at_most(bill, tariff.max_price, currency)
    return SessionPrice(lines=tuple(lines), bill=bill)


def _money(amount: Decimal, currency: str, rounding: str) -> Money:
    exponent = minor_exponent(currency)
    minor = amount.scaleb(exponent).to_integral_value(rounding=rounding)
    return Money(int(minor), currency)


def _adjusted(bill: Bill, dimension: str, currency: str, factor: Decimal) -> list[BillLine]:
    """Adjustment lines, one per VAT rate, moving each rate's gross by `factor` - 1."""
    adjustments = {
        vat.percent: Money.from_decimal((vat.base + vat.vat).to_decimal() * (factor - 1), currency)
        for vat in bill.vat
    }
    return [
        *bill.lines,
        *(
            BillLine(
                dimension=dimension,
                quantity=Decimal(1),
                unit="session",
                incl_vat=amount,
                vat_percent=rate,
            )
            for rate, amount in adjustments.items()
        ),
    ]


def _nudge(lines: list[BillLine], dimension: str, step: int) -> list[BillLine] | None:
    """Move the largest adjustment by `step` minor units; None if it would change sign."""
    index = max(
        (i for i, line in enumerate(lines) if line.dimension == dimension),
        key=lambda i: abs(lines[i].incl_vat.minor),
    )
    line = lines[index]
    minor = line.incl_vat.minor
    sign = 1 if dimension == "MIN_PRICE" else -1  # a minimum adds, a maximum takes off
    if (minor + step) * sign < 0:
        return None
    moved = replace(line, incl_vat=Money(minor + step, line.incl_vat.currency))
    return [*lines[:index], moved, *lines[index + 1 :]]


def _settle(
    lines: list[BillLine], dimension: str, step: int, bad: Callable[[Bill], bool], currency: str
) -> Bill:
    """From an estimate, move the adjustment by `step` until the bound holds, then back as
    far as it still holds: the least adjustment that meets the bound, so a bounded price
    depends on the bound alone and the running price stays monotonic."""
    result = make_bill(tuple(lines), currency)
    for _ in range(_MAX_NUDGES):
        if not bad(result):
            break
        moved = _nudge(lines, dimension, step)
        if moved is None:  # pragma: no cover - the bound is reachable by construction
            break
        lines, result = moved, make_bill(tuple(moved), currency)
    for _ in range(_MAX_NUDGES):
        moved = _nudge(lines, dimension, -step)
        if moved is None:
            break
        trial = make_bill(tuple(moved), currency)
        if bad(trial):
            break
        lines, result = moved, trial
    return result


def _at_least(bill: Bill, floor: Price, currency: str, vat_rate: Decimal) -> Bill:
    low_excl = _money(floor.excl_vat, currency, ROUND_CEILING)
    low_incl = None if floor.incl_vat is None else _money(floor.incl_vat, currency, ROUND_CEILING)

    def short(b: Bill) -> bool:
        return b.total_excl_vat < low_excl or (low_incl is not None and b.total < low_incl)

    if not short(bill):
        return bill
    if bill.total.minor == 0:
        # Nothing to scale: one line at the rate min_price implies (incl / excl - 1), or the
        # tariff's own rate when min_price gives no amount incl. VAT.
        rate = vat_rate
        if floor.incl_vat is not None:
            rate = Decimal(0)
            if floor.excl_vat > 0:
                rate = ((floor.incl_vat / floor.excl_vat - 1) * _HUNDRED).quantize(Decimal("0.01"))
        estimate = low_excl.to_decimal() * (1 + rate / _HUNDRED)
        if low_incl is not None:
            estimate = max(estimate, low_incl.to_decimal())
        lines = [
            *bill.lines,
            BillLine(
                dimension="MIN_PRICE",
                quantity=Decimal(1),
                unit="session",
                incl_vat=Money.from_decimal(estimate, currency),
                vat_percent=rate,
            ),
        ]
    else:
        factor = Decimal(1)
        if bill.total_excl_vat.minor > 0:
            factor = low_excl.to_decimal() / bill.total_excl_vat.to_decimal()
        if low_incl is not None:
            factor = max(factor, low_incl.to_decimal() / bill.total.to_decimal())
        lines = _adjusted(bill, "MIN_PRICE", currency, factor)
    return _settle(lines, "MIN_PRICE", 1, short, currency)


def _at_most(bill: Bill, ceiling: Price, currency: str) -> Bill:
    high_excl = _money(ceiling.excl_vat, currency, ROUND_FLOOR)
    high_incl = (
        None if ceiling.incl_vat is None else _money(ceiling.incl_vat, currency, ROUND_FLOOR)
    )

    def over(b: Bill) -> bool:
        return b.total_excl_vat > high_excl or (high_incl is not None and b.total > high_incl)

    if not over(bill):
        return bill
    factor = high_excl.to_decimal() / bill.total_excl_vat.to_decimal()
    if high_incl is not None and bill.total.minor > 0:
        factor = min(factor, high_incl.to_decimal() / bill.total.to_decimal())
    return _settle(_adjusted(bill, "MAX_PRICE", currency, factor), "MAX_PRICE", -1, over, currency)


# --- the tariff and its incremental meterage ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OcpiTariff:
    """An OCPI 2.2.1 tariff as `terminal.core.billing.Tariff`, for a station in zone `tz`.

    `name` defaults to the tariff's `id`; the price before start is `price_phrases` (any
    language renders them, `terminal.core.words`), `price_lines` the same in English."""

    document: Tariff
    tz: tzinfo
    label: str | None = None
    _plan: Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", compile_tariff(self.document, self.tz))

    @classmethod
    def from_json(cls, text: str | bytes, *, tz: tzinfo, label: str | None = None) -> OcpiTariff:
        """Parse an OCPI Tariff object (raises `TariffError` naming the field)."""
        return cls(document=parse_tariff(text), tz=tz, label=label)

    @property
    def plan(self) -> Plan:
        """The compiled form the engine and the display evaluate."""
        return self._plan

    @property
    def name(self) -> str:
        return self.label if self.label is not None else self.document.id

    @property
    def currency(self) -> str:
        return self.document.currency

    def begin(self, start: datetime) -> OcpiMeterage:
        """Start pricing a session that began at `start` (aware)."""
        plan = self._plan
        t = to_us(start)
        return OcpiMeterage(
            plan=plan,
            start_us=t,
            t_us=t,
            energy_wh=0,
            usage=_Usage(units=(0,) * len(plan.components)),
            ok=plan.static_ok(t, t, 0),
            next_t=plan.next_time_bound(t, t),
            next_e=plan.next_energy_bound(0),
        )

    def display(self, at: datetime, *, power_w: int | None = None) -> PriceDisplay:
        """The price of a session starting at `at` (AFIR price before start)."""
        return price_display(self._plan, to_us(at), power_w=power_w)

    def price_lines(self, at: datetime) -> tuple[str, ...]:
        return self.display(at).lines()

    def price_phrases(self, at: datetime) -> tuple[Phrase, ...]:
        return self.display(at).phrases()

    def price(
        self, *, start: datetime, periods: Sequence[ChargingPeriod], end: datetime
    ) -> SessionPrice:
        """Price a whole session by full recomputation (`price_periods`)."""
        return price_periods(self, start=start, periods=periods, end=end)


@dataclass(frozen=True, slots=True, kw_only=True)
class OcpiMeterage:
    """A session's usage under an `OcpiTariff`; `advance` is O(1) amortized per sample.

    Besides the usage so far it carries the per-element restriction state at the last
    sample (`ok`), valid until time `next_t` and energy `next_e`: samples that stay below
    both are folded in without re-evaluating time zones, dates or bounds."""

    plan: Plan = field(repr=False)
    start_us: int
    t_us: int
    energy_wh: int
    usage: _Usage
    ok: tuple[bool, ...]
    next_t: int
    next_e: int

    def advance(
        self, *, at: datetime, energy_wh: int, power_w: int, current_ma: int, charging: bool
    ) -> OcpiMeterage:
        # A sample never moves time or the register backwards (a glitch adds nothing).
        t0, e0 = self.t_us, self.energy_wh
        t1, e1 = max(to_us(at), t0), max(energy_wh, e0)
        plan = self.plan
        tally = _Tally(self.usage)
        if t1 < self.next_t and e1 < self.next_e:
            tally.add(
                plan,
                self.ok,
                power_w=power_w,
                current_ma=current_ma,
                charging=charging,
                duration_us=t1 - t0,
                energy_wh=e1 - e0,
            )
            return replace(self, t_us=t1, energy_wh=e1, usage=tally.freeze())
        ok, next_t, next_e = self.ok, self.next_t, self.next_e
        t, e = t0, e0
        while True:
            end_t = min(t1, next_t)
            end_e = interpolate_energy(t0, e0, t1, e1, end_t)
            if end_e >= next_e:
                end_t, end_e = time_of_energy(t0, e0, t1, e1, next_e), next_e
            tally.add(
                plan,
                ok,
                power_w=power_w,
                current_ma=current_ma,
                charging=charging,
                duration_us=end_t - t,
                energy_wh=end_e - e,
            )
            t, e = end_t, end_e
            ok = plan.static_ok(self.start_us, t, e)
            if t >= next_t:
                next_t = plan.next_time_bound(self.start_us, t)
            if e >= next_e:
                next_e = plan.next_energy_bound(e)
            if t == t1 and e == e1:
                break
        return replace(
            self, t_us=t1, energy_wh=e1, usage=tally.freeze(), ok=ok, next_t=next_t, next_e=next_e
        )

    def price(self) -> SessionPrice:
        """The exact lines and the bill so far."""
        return _price(self.plan, self.usage)

    def bill(self) -> Bill:
        return self.price().bill

    def total(self) -> Money:
        return self.price().bill.total


# --- full recomputation ------------------------------------------------------------------


def price_periods(
    tariff: OcpiTariff, *, start: datetime, periods: Sequence[ChargingPeriod], end: datetime
) -> SessionPrice:
    """Price a whole session from its charging periods, enumerating every boundary of every
    period afresh (no carried state): the reference the incremental meterage is checked
    against, and what the CLI uses."""
    plan = tariff.plan
    start_us = to_us(start)
    end_us = to_us(end)
    tally = _Tally(_Usage(units=(0,) * len(plan.components)))
    energy = 0
    starts = [to_us(p.start) for p in periods]
    previous_end = start_us
    walls: dict[date, list[int]] = {}
    for i, period in enumerate(periods):
        # Periods are in order; one that starts early is clipped, never counted twice.
        t0 = max(starts[i], previous_end)
        t1 = max(starts[i + 1] if i + 1 < len(periods) else end_us, t0)
        previous_end = t1
        e0, e1 = energy, energy + max(period.energy_wh, 0)
        energy = e1
        points = {(t0, e0), (t1, e1)}
        for t in _time_bounds(plan, start_us, t0, t1, walls):
            points.add((t, interpolate_energy(t0, e0, t1, e1, t)))
        for bound in plan.energy_bounds:
            if e0 < bound <= e1:
                points.add((time_of_energy(t0, e0, t1, e1, bound), bound))
        ordered = sorted(points)
        if len(ordered) == 1:
            ordered.append(ordered[0])  # an empty period still counts for FLAT
        for (ta, ea), (tb, eb) in pairwise(ordered):
            tally.add(
                plan,
                plan.static_ok(start_us, ta, ea),
                power_w=period.power_w,
                current_ma=period.current_ma,
                charging=period.charging,
                duration_us=tb - ta,
                energy_wh=eb - ea,
            )
    return _price(plan, tally.freeze())


def _time_bounds(
    plan: Plan, start_us: int, t0: int, t1: int, walls: dict[date, list[int]]
) -> list[int]:
    """Every instant in (t0, t1) where a time restriction may flip (`walls` caches each
    local day's wall-clock instants, both readings of an ambiguous time)."""
    found = [start_us + d for d in plan.duration_bounds if t0 < start_us + d < t1]
    if not plan.wall_times or t1 <= t0:
        return found
    day = plan.local(t0).date()
    last = plan.local(t1).date()
    while day <= last:
        if day not in walls:
            walls[day] = [
                to_us(datetime.combine(day, wall, tzinfo=plan.tz).replace(fold=fold))
                for wall in plan.wall_times
                for fold in (0, 1)
            ]
        found.extend(t for t in walls[day] if t0 < t < t1)
        day += timedelta(days=1)
    # UTC offset changes: probe every 6 h, bisect where the offset differs.
    probe = 6 * 3600 * US_PER_SECOND
    lo = t0
    while lo < t1:
        hi = min(lo + probe, t1)
        if plan.offset(lo) != plan.offset(hi):
            change = plan.offset_change(lo, hi)
            if change < t1:
                found.append(change)
        lo = hi
    return found
