"""What the driver is shown: screens as values, and their rendering into neutral frames.

The machine decides *which* screen with which data; `frame_for` turns it into text. Names are
stable identifiers used by scripts (`expect charging`) and by the web page's layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import assert_never

from hardware.ports import Frame, Tone
from terminal.core.billing import LIMIT, Bill, format_unit_price
from terminal.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle:
    price_lines: tuple[str, ...]
    connected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorizing:
    card: str  # masked


@dataclass(frozen=True, slots=True, kw_only=True)
class Declined:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswer:
    """The payment service did not answer in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlugIn:
    authorized: Money
    connected: bool
    partial: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Charging:
    energy_wh: int
    cost: Money
    cap: Money
    power_w: int
    elapsed_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspended:
    energy_wh: int
    cost: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopping:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    receipt_id: str
    url: str
    station: str
    tariff: str
    card: str
    started_at: str  # ISO 8601 UTC
    ended_at: str
    energy_wh: int
    bill: Bill | None  # None when voided (nothing charged)
    total: Money
    end_reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A short message over the current screen: tap-again, not-accepted, expired, in-use,
    out-of-order, timed-out, cancelled."""

    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    reasons: tuple[str, ...]


Screen = (
    Idle
    | Authorizing
    | Declined
    | NoAnswer
    | PlugIn
    | Charging
    | Suspended
    | Stopping
    | Receipt
    | Notice
    | Unavailable
)

_NOTICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tap-again": ("Please tap again", ("The card could not be read.", "Hold it still.")),
    "not-accepted": ("Card not accepted", ("Please try another card.",)),
    "expired": ("Card expired", ("Please try another card.",)),
    "in-use": ("Charger in use", ("Only the card that started", "this session can stop it.")),
    "out-of-order": ("Out of order", ("This charger is not available.",)),
    "timed-out": ("Session cancelled", ("No vehicle started charging.", "Nothing was charged.")),
    "cancelled": ("Session cancelled", ("Nothing was charged.",)),
}

_STOP_REASONS = {
    "card": "Stopped with your card",
    "unplugged": "Cable unplugged",
    "cost_cap": "Payment limit reached",
    "suspended_timeout": "Vehicle finished",
    "fault": "Stopped by a fault",
    "meter": "Meter failure",
    "out_of_service": "Charger going out of service",
    "restart": "Recovered after restart",
}


# Bill line names on the receipt (BillLine.dimension: OCPI CdrDimensionType names, the
# tariff's min/max price adjustments, and the cut to the authorized amount).
BILL_LINES = {
    "ENERGY": "Energy",
    "TIME": "Charging time",
    "PARKING_TIME": "Idle time",
    "FLAT": "Session fee",
    "MIN_PRICE": "Minimum price",
    "MAX_PRICE": "Maximum price",
    LIMIT: "Limited to the authorized amount",
}


def bill_fields(bill: Bill) -> list[tuple[str, str]]:
    """The itemized bill as labelled values: each line incl. VAT with its quantity and the
    unit price it was billed at (so the driver can multiply it out), the total excl. VAT and
    the VAT per rate on its base (the caller adds the total)."""
    fields: list[tuple[str, str]] = []
    currency = bill.total.currency
    for line in bill.lines:
        name = BILL_LINES.get(line.dimension, line.dimension)
        price = "" if line.unit_price is None else format_unit_price(line.unit_price, currency)
        if line.unit == "kWh":
            name += f" {line.quantity:.3f} kWh"
            name += f" at {price}/kWh" if price else ""
        elif line.unit == "h":
            # Hours are kept to the microhour: the nearest second is the billed one.
            name += f" {hms(int((line.quantity * 3600).to_integral_value(ROUND_HALF_UP)))}"
            name += f" at {price}/min" if price else ""
        fields.append((name, str(line.incl_vat)))
    fields.append(("Excl. VAT", str(bill.total_excl_vat)))
    fields += [(f"VAT {v.percent.normalize():f}% on {v.base}", str(v.vat)) for v in bill.vat]
    return fields


def kwh(energy_wh: int) -> str:
    return f"{Decimal(energy_wh) / 1000:.2f} kWh"


def hms(seconds: int) -> str:
    h, rest = divmod(max(seconds, 0), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def screen_name(screen: Screen) -> str:
    """The stable name of a screen (what `expect` matches)."""
    if isinstance(screen, Notice):
        return screen.kind
    return {
        Idle: "idle",
        Authorizing: "authorizing",
        Declined: "declined",
        NoAnswer: "no-answer",
        PlugIn: "plug-in",
        Charging: "charging",
        Suspended: "suspended",
        Stopping: "stopping",
        Receipt: "receipt",
        Unavailable: "out-of-order",
    }[type(screen)]


def frame_for(screen: Screen) -> Frame:
    """Render a screen into a renderer-neutral frame (English)."""
    name = screen_name(screen)
    match screen:
        case Idle():
            hint = "Tap your card to start" if screen.connected else "Tap your card, then plug in"
            return Frame(name=name, title="Welcome", lines=(*screen.price_lines, hint))
        case Authorizing():
            return Frame(
                name=name,
                title="Authorizing",
                lines=(screen.card, "Please wait..."),
                tone=Tone.BUSY,
            )
        case Declined():
            return Frame(
                name=name,
                title="Declined",
                lines=("The payment was declined.", "Please try another card."),
                tone=Tone.ERROR,
            )
        case NoAnswer():
            return Frame(
                name=name,
                title="Payment unavailable",
                lines=("The payment service did not answer.", "Nothing was charged."),
                tone=Tone.ERROR,
            )
        case PlugIn():
            lines = [f"Approved up to {screen.authorized}"]
            if screen.partial:
                lines.append("(partially approved)")
            lines.append(
                "Start charging from your vehicle" if screen.connected else "Plug in your vehicle"
            )
            return Frame(name=name, title="Approved", lines=tuple(lines), tone=Tone.OK)
        case Charging():
            return Frame(
                name=name,
                title="Charging",
                lines=("Tap the same card to stop",),
                fields=(
                    ("Energy", kwh(screen.energy_wh)),
                    ("Cost", str(screen.cost)),
                    ("Power", f"{Decimal(screen.power_w) / 1000:.1f} kW"),
                    ("Time", hms(screen.elapsed_s)),
                    ("Limit", str(screen.cap)),
                ),
                tone=Tone.BUSY,
            )
        case Suspended():
            return Frame(
                name=name,
                title="Paused by vehicle",
                lines=("Tap the same card or unplug to finish",),
                fields=(("Energy", kwh(screen.energy_wh)), ("Cost", str(screen.cost))),
            )
        case Stopping():
            return Frame(
                name=name,
                title="Stopping",
                lines=(_STOP_REASONS.get(screen.reason, screen.reason), "Please wait..."),
                tone=Tone.BUSY,
            )
        case Receipt():
            fields: list[tuple[str, str]] = [
                ("Energy", kwh(screen.energy_wh)),
                ("Card", screen.card),
            ]
            if screen.bill is not None:
                fields += bill_fields(screen.bill)
            fields.append(("Total", str(screen.total)))
            return Frame(
                name=name,
                title="Thank you",
                lines=(
                    _STOP_REASONS.get(screen.end_reason, screen.end_reason),
                    f"Receipt {screen.receipt_id}",
                    screen.station,
                    f"Tariff: {screen.tariff}",
                    f"{screen.started_at} - {screen.ended_at}",
                ),
                fields=tuple(fields),
                qr=screen.url,
                tone=Tone.OK,
            )
        case Notice():
            title, notice_lines = _NOTICES.get(screen.kind, (screen.kind, ()))
            return Frame(name=name, title=title, lines=notice_lines, tone=Tone.ERROR)
        case Unavailable():
            return Frame(
                name=name,
                title="Out of order",
                lines=("This charger is not available.",),
                tone=Tone.ERROR,
            )
        case _:
            assert_never(screen)
