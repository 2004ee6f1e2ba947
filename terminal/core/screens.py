"""What the driver is shown: screens as values, and their rendering into neutral frames.

The machine decides *which* screen with which data; `frame_for` turns it into text in the
language of the `Words` it is given (English message ids by default: every string below that
`_` wraps is a gettext msgid, extracted into the catalogs in terminal/locale/; a test checks
each catalog has them all). Names are stable identifiers used by scripts (`expect charging`)
and by the web page's layouts. Times are shown in the station's local time (`Words.when`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import assert_never

from hardware.ports import Frame, Tone
from terminal.core.billing import LIMIT, Bill, format_unit_price
from terminal.core.words import ENGLISH, N_, NATIVE_NAMES, Phrase, Words, render
from terminal.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle:
    price: tuple[Phrase, ...]  # the price before start (Tariff.price_phrases)
    connected: bool = False
    pay_url: str = ""  # pay by phone: the one-time code's link, shown as a QR ("": none)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebPayment:
    """A driver is paying on the operator's web page (OCPP 2.1 C25): the charger waits for
    that payment and takes no card meanwhile."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorizing:
    card: str  # masked


@dataclass(frozen=True, slots=True, kw_only=True)
class Declined:
    reason: str
    pay_url: str = ""  # try another way: pay by phone


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswer:
    """The payment service did not answer in time."""

    pay_url: str = ""  # try another way: pay by phone


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
    started_at: str  # ISO 8601 UTC; shown in the station's local time
    ended_at: str
    energy_wh: int
    bill: Bill | None  # None when voided (nothing charged)
    total: Money
    end_reason: str
    # The gateway's one-time code that links the card to a driver's account ("": none yet).
    # A secret while it is valid: shown on the screen, kept out of the repr.
    link_code: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A short message over the current screen: tap-again, not-accepted, expired, in-use,
    out-of-order, timed-out, cancelled."""

    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Starting:
    """What a display shows from the moment it is built until the daemon's first frame. The
    machine never chooses it: the composition root renders it in the station's language and
    hands the frame to the display (drivers cannot read the catalogs)."""


Screen = (
    Starting
    | Idle
    | WebPayment
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
    "tap-again": (
        N_("Please tap again"),
        (N_("The card could not be read."), N_("Hold it still.")),
    ),
    "not-accepted": (N_("Card not accepted"), (N_("Please try another card."),)),
    "expired": (N_("Card expired"), (N_("Please try another card."),)),
    "in-use": (
        N_("Charger in use"),
        (N_("Only the card that started"), N_("this session can stop it.")),
    ),
    "out-of-order": (N_("Out of order"), (N_("This charger is not available."),)),
    "reserved": (
        N_("Charger reserved"),
        (N_("A payment on a phone is in progress"), N_("for this charger.")),
    ),
    "timed-out": (
        N_("Session cancelled"),
        (N_("No vehicle started charging."), N_("Nothing was charged.")),
    ),
    "cancelled": (N_("Session cancelled"), (N_("Nothing was charged."),)),
}

_STOP_REASONS = {
    "card": N_("Stopped with your card"),
    "unplugged": N_("Cable unplugged"),
    "cost_cap": N_("Payment limit reached"),
    "suspended_timeout": N_("Vehicle finished"),
    "fault": N_("Stopped by a fault"),
    "meter": N_("Meter failure"),
    "out_of_service": N_("Charger going out of service"),
    "restart": N_("Recovered after restart"),
}


# Bill line names on the receipt (BillLine.dimension: OCPI CdrDimensionType names, the
# tariff's min/max price adjustments, and the cut to the authorized amount).
BILL_LINES = {
    "ENERGY": N_("Energy"),
    "TIME": N_("Charging time"),
    "PARKING_TIME": N_("Idle time"),
    "FLAT": N_("Session fee"),
    "MIN_PRICE": N_("Minimum price"),
    "MAX_PRICE": N_("Maximum price"),
    LIMIT: N_("Limited to the authorized amount"),
}

# The web page's own words (Frame.labels): the four steps of a session, and more.
_LABELS = (
    ("step-tap", N_("Tap card")),
    ("step-plug", N_("Plug in")),
    ("step-charge", N_("Charge")),
    ("step-done", N_("Done")),
    ("offline", N_("No connection to the charger")),
)


def bill_fields(bill: Bill, words: Words = ENGLISH) -> list[tuple[str, str]]:
    """The itemized bill as labelled values: each line incl. VAT with its quantity and the
    unit price it was billed at (so the driver can multiply it out), the total excl. VAT and
    the VAT per rate on its base (the caller adds the total)."""
    _ = words.text
    fields: list[tuple[str, str]] = []
    currency = bill.total.currency
    for line in bill.lines:
        name = _(BILL_LINES.get(line.dimension, line.dimension))
        price = "" if line.unit_price is None else format_unit_price(line.unit_price, currency)
        if line.unit == "kWh":
            quantity = f"{line.quantity:.3f} kWh"
            name = (
                _("{} {} at {}/kWh").format(name, quantity, price)
                if price
                else f"{name} {quantity}"
            )
        elif line.unit == "h":
            # Hours are kept to the microhour: the nearest second is the billed one.
            duration = hms(int((line.quantity * 3600).to_integral_value(ROUND_HALF_UP)))
            name = (
                _("{} {} at {}/min").format(name, duration, price)
                if price
                else f"{name} {duration}"
            )
        fields.append((words.number(name), words.number(str(line.incl_vat))))
    fields.append((_("Excl. VAT"), words.number(str(bill.total_excl_vat))))
    fields += [
        (
            words.number(_("VAT {}% on {}").format(f"{v.percent.normalize():f}", v.base)),
            words.number(str(v.vat)),
        )
        for v in bill.vat
    ]
    return fields


def receipt_fields(
    *, energy_wh: int, card: str, bill: Bill | None, total: Money, words: Words = ENGLISH
) -> list[tuple[str, str]]:
    """A receipt's labelled values, the total last: the energy, the card, the itemized bill
    (`bill_fields`) and the total. The kiosk's receipt screen and the gateway's receipt page
    both show exactly these."""
    _ = words.text
    fields = [(_("Energy"), words.number(kwh(energy_wh))), (_("Card"), card)]
    if bill is not None:
        fields += bill_fields(bill, words)
    fields.append((_("Total"), words.number(str(total))))
    return fields


LINK_HINT = N_("To link this card to your account, enter the link code on the portal.")


def grouped(code: str) -> str:
    """A link code as the screen shows it: groups of four, easier to read and type."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


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
        Starting: "starting",
        Idle: "idle",
        WebPayment: "web-payment",
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


def frame_for(screen: Screen, words: Words = ENGLISH) -> Frame:
    """Render a screen into a renderer-neutral frame in the language of `words`."""
    frame = _frame(screen, words, words.text)
    labels = tuple((key, words.text(msgid)) for key, msgid in _LABELS)
    name = NATIVE_NAMES.get(words.language, words.language)
    return Frame(
        name=frame.name,
        title=frame.title,
        lines=frame.lines,
        fields=frame.fields,
        qr=frame.qr,
        tone=frame.tone,
        total=frame.total,
        code=frame.code,
        language=words.language,
        labels=(*labels, ("language", name)),
    )


def frames_for(screen: Screen, words: Words, others: tuple[Words, ...]) -> Frame:
    """The screen in `words`' language, with its `variants` in each of `others`."""
    first = frame_for(screen, words)
    variants = tuple(frame_for(screen, other) for other in others if other is not words)
    return Frame(
        name=first.name,
        title=first.title,
        lines=first.lines,
        fields=first.fields,
        qr=first.qr,
        tone=first.tone,
        total=first.total,
        code=first.code,
        language=first.language,
        variants=variants,
        labels=first.labels,
    )


def _frame(screen: Screen, words: Words, _: Callable[[str], str]) -> Frame:
    name = screen_name(screen)
    money = words.number
    match screen:
        case Starting():
            return Frame(
                name=name, title=_("Starting"), lines=(_("Please wait..."),), tone=Tone.BUSY
            )
        case Idle():
            hint = (
                _("Tap your card to start")
                if screen.connected
                else _("Tap your card, then plug in")
            )
            prices = tuple(render(words, phrase) for phrase in screen.price)
            if screen.pay_url:
                return Frame(
                    name=name,
                    title=_("Welcome"),
                    lines=(*prices, hint, _("Or scan to pay by phone")),
                    qr=screen.pay_url,
                )
            return Frame(name=name, title=_("Welcome"), lines=(*prices, hint))
        case WebPayment():
            return Frame(
                name=name,
                title=_("Payment in progress"),
                lines=(
                    _("Finish the payment on your phone."),
                    _("This charger is kept for you meanwhile."),
                ),
                tone=Tone.BUSY,
            )
        case Authorizing():
            return Frame(
                name=name,
                title=_("Authorizing"),
                lines=(screen.card, _("Please wait...")),
                tone=Tone.BUSY,
            )
        case Declined():
            return Frame(
                name=name,
                title=_("Declined"),
                lines=(
                    _("The payment was declined."),
                    _("Please try another card."),
                    *((_("Or scan to pay by phone"),) if screen.pay_url else ()),
                ),
                qr=screen.pay_url or None,
                tone=Tone.ERROR,
            )
        case NoAnswer():
            return Frame(
                name=name,
                title=_("Payment unavailable"),
                lines=(
                    _("The payment service did not answer."),
                    _("Nothing was charged."),
                    *((_("Or scan to pay by phone"),) if screen.pay_url else ()),
                ),
                qr=screen.pay_url or None,
                tone=Tone.ERROR,
            )
        case PlugIn():
            lines = [money(_("Approved up to {}").format(screen.authorized))]
            if screen.partial:
                lines.append(_("(partially approved)"))
            lines.append(
                _("Start charging from your vehicle")
                if screen.connected
                else _("Plug in your vehicle")
            )
            return Frame(name=name, title=_("Approved"), lines=tuple(lines), tone=Tone.OK)
        case Charging():
            return Frame(
                name=name,
                title=_("Charging"),
                lines=(_("Tap the same card to stop"),),
                fields=(
                    (_("Energy"), money(kwh(screen.energy_wh))),
                    (_("Cost"), money(str(screen.cost))),
                    (_("Power"), money(f"{Decimal(screen.power_w) / 1000:.1f} kW")),
                    (_("Time"), hms(screen.elapsed_s)),
                    (_("Limit"), money(str(screen.cap))),
                ),
                tone=Tone.BUSY,
            )
        case Suspended():
            return Frame(
                name=name,
                title=_("Paused by vehicle"),
                lines=(_("Tap the same card or unplug to finish"),),
                fields=(
                    (_("Energy"), money(kwh(screen.energy_wh))),
                    (_("Cost"), money(str(screen.cost))),
                ),
            )
        case Stopping():
            return Frame(
                name=name,
                title=_("Stopping"),
                lines=(_(_STOP_REASONS.get(screen.reason, screen.reason)), _("Please wait...")),
                tone=Tone.BUSY,
            )
        case Receipt():
            fields = receipt_fields(
                energy_wh=screen.energy_wh,
                card=screen.card,
                bill=screen.bill,
                total=screen.total,
                words=words,
            )
            total = fields[-1]
            started = datetime.fromisoformat(screen.started_at)
            ended = datetime.fromisoformat(screen.ended_at)
            code = (_("Link code"), grouped(screen.link_code)) if screen.link_code else None
            return Frame(
                name=name,
                title=_("Thank you"),
                lines=(
                    _(_STOP_REASONS.get(screen.end_reason, screen.end_reason)),
                    _("Receipt {}").format(screen.receipt_id),
                    screen.station,
                    _("Tariff: {}").format(screen.tariff),
                    f"{words.when(started)} - {words.clock(ended)}",
                    # A line, not a field: the fields are the receipt's rows, the same as
                    # on the gateway's receipt page, which never shows the code.
                    *((_(LINK_HINT), _("Link code: {}").format(code[1])) if code else ()),
                ),
                fields=tuple(fields),
                qr=screen.url,
                tone=Tone.OK,
                total=total,
                code=code,
            )
        case Notice():
            title, notice_lines = _NOTICES.get(screen.kind, (screen.kind, ()))
            return Frame(
                name=name,
                title=_(title),
                lines=tuple(_(line) for line in notice_lines),
                tone=Tone.ERROR,
            )
        case Unavailable():
            return Frame(
                name=name,
                title=_("Out of order"),
                lines=(_("This charger is not available."),),
                tone=Tone.ERROR,
            )
        case _:
            assert_never(screen)
