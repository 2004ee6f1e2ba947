"""What the kernel hands back: an outcome and, for a card that can go online, its data.

`CardData` is the one place the clear PAN lives (docs/architecture.md, card data): its repr and
str show brand and label only, never a digit of the PAN, the expiry or track 2. The
protection module turns it into a token, masked PAN and encrypted blob and drops it.
"""

from __future__ import annotations

import calendar
import datetime
import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """How a tap ended (after EMV Book A 6.2, outcomes, narrowed to what a kiosk shows)."""

    APPROVED_FOR_ONLINE = "approved-for-online"  # ARQC read: send for online authorization
    DECLINED = "declined"  # the card declined offline (AAC)
    TAP_AGAIN = "tap-again"  # card left the field or answered garbage: present it again
    NOT_ACCEPTED = "not-accepted"  # no supported application, or the card refuses: other card
    EXPIRED = "expired"  # application expired (5F24) or not yet effective (5F25)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CardData:
    """A read card, ready for online authorization.

    `pan` is digits only; `expiry` the last valid day (5F24, or the month's end from track 2);
    `track2` the track 2 equivalent data (57) if the card gave it; `online_data` the (tag,
    value) pairs for the authorization request's ICC data (ISO 8583 DE 55), in a fixed order,
    never holding 5A or 57.
    """

    pan: str
    expiry: datetime.date
    pan_sequence_number: int | None
    brand: str
    aid: bytes
    application_label: str
    track2: bytes | None
    online_data: tuple[tuple[int, bytes], ...]
    tokenized: bool = False  # EMV Payment Tokenisation: 9F19 Token Requestor ID present

    @property
    def last4(self) -> str:
        """The last four digits of the PAN (PCI DSS 3.4 allows showing them)."""
        return self.pan[-4:]

    @property
    def masked_pan(self) -> str:
        """The PAN with all but the last four digits replaced by '*'."""
        return "*" * (len(self.pan) - 4) + self.last4

    def online_value(self, tag: int) -> bytes | None:
        """The value of `tag` in the online data, or None."""
        for item_tag, value in self.online_data:
            if item_tag == tag:
                return value
        return None

    def __repr__(self) -> str:
        return (
            f"CardData(brand={self.brand!r}, application_label={self.application_label!r}, "
            "pan=<hidden>)"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelResult:
    """The end of one kernel run. `card` is set only for APPROVED_FOR_ONLINE; `brand` once an
    application was chosen; `reason` is a diagnostic that never holds card data."""

    outcome: Outcome
    card: CardData | None = None
    brand: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Track2:
    """Track 2 equivalent data (tag 57, Book 3 Annex A1; ISO/IEC 7813 track 2 layout):
    PAN, separator D, expiry YYMM, service code, discretionary data, F padding."""

    pan: str
    expiry_yymm: str
    service_code: str | None  # not used by an online-only, no-CVM kiosk; None if not digits

    def __repr__(self) -> str:
        return "Track2(<hidden>)"


def decode_cn(value: bytes) -> str | None:
    """A compressed-numeric (cn) value: BCD digits right-padded with F (e.g. PAN 5A).
    None if a nibble other than trailing F is not a digit."""
    digits = value.hex().upper().rstrip("F")
    return digits if digits.isdigit() else None


def decode_track2(value: bytes) -> Track2 | None:
    """Split track 2 equivalent data; None if it is not well formed."""
    text = value.hex().upper().rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or len(rest) < 4 or not rest[:4].isdigit():
        return None
    service = rest[4:7]
    return Track2(
        pan=pan,
        expiry_yymm=rest[:4],
        service_code=service if len(service) == 3 and service.isdigit() else None,
    )


def emv_year(yy: int) -> int:
    """Book 4 6.7.3 (year 2000 rule): YY 00-49 are 20YY, 50-99 are 19YY."""
    return 2000 + yy if yy < 50 else 1900 + yy


def decode_date(value: bytes) -> datetime.date | None:
    """An n6 YYMMDD date (5F24, 5F25, 9A); None if not a valid date."""
    text = value.hex()
    if len(text) != 6 or not text.isdigit():
        return None
    try:
        return datetime.date(emv_year(int(text[:2])), int(text[2:4]), int(text[4:]))
    except ValueError:
        return None


def month_end(yymm: str) -> datetime.date | None:
    """The last day of a YYMM month (track 2 expiry); None if not a valid month."""
    if len(yymm) != 4 or not yymm.isdigit() or not 1 <= int(yymm[2:]) <= 12:
        return None
    year, month = emv_year(int(yymm[:2])), int(yymm[2:])
    return datetime.date(year, month, calendar.monthrange(year, month)[1])
