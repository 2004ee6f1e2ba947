"""A charging session as the machine keeps it and the journal stores it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from terminal.core.billing import Meterage, Tariff
from terminal.money import Money


class CardKind(enum.Enum):
    PAYMENT = "payment"  # EMV contactless card or phone wallet
    ID_TOKEN = "id_token"  # RFID fleet / roaming token (UID only)
    WEB = "web"  # paid on the driver's phone (the kiosk's QR code): the gateway holds it


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """A presented card after protection: never a PAN.

    `token` is the fleet-wide keyed hash that recognises the same card again (tap-to-stop);
    `payload` is the protected authorization data (encrypted blob fields), opaque here."""

    kind: CardKind
    token: str
    brand: str
    last4: str
    expiry: str | None = None  # YYMM, for the receipt and the gateway
    payload: tuple[tuple[str, str], ...] = ()

    def masked(self) -> str:
        return f"{self.brand} **** {self.last4}" if self.last4 else self.brand


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalStanding:
    """What the kiosk knows locally about a tapped card, for a decision without the gateway:
    whether its token is on the local authorization list or on the deny list (both synced
    from the gateway), and the store-and-forward book: payment sessions started offline whose
    authorization the gateway has not answered yet (the amount at risk, how many, the oldest
    start)."""

    listed: bool = False
    denied: bool = False
    outstanding_minor: int = 0
    outstanding_count: int = 0
    oldest_outstanding: datetime | None = None


class Status(enum.Enum):
    """Where a session is; the journal's `status` column."""

    AUTHORIZING = "authorizing"  # hold requested, no answer yet
    AUTHORIZED = "authorized"  # hold approved, waiting for the vehicle
    CHARGING = "charging"
    SUSPENDED = "suspended"  # vehicle stopped asking for energy
    FINISHING = "finishing"  # contactor opened, final reading pending
    CAPTURING = "capturing"  # capture queued (settled locally)
    VOIDING = "voiding"  # void queued (settled locally)
    DECLINED = "declined"  # hold declined: nothing to settle

    @property
    def settled(self) -> bool:
        """Settled locally: the final capture or void is decided and queued (or not needed)."""
        return self in (Status.CAPTURING, Status.VOIDING, Status.DECLINED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One session. Everything here but `meterage` and the increment bookkeeping is
    persisted by the journal (a session never resumes after a restart: it is settled)."""

    session_id: str
    card: Card
    hold: Money  # what was asked for
    status: Status
    started_at: datetime
    authorized: Money | None = None  # what was approved (the cost cap)
    start_register_wh: int | None = None  # meter register when the hold was approved
    energy_wh: int = 0  # delivered so far
    amount: Money | None = None  # priced so far / final (incl. VAT), capped
    charging_started_at: datetime | None = None
    last_sample_at: datetime | None = None
    last_sample_ms: int | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    journaled_wh: int = 0  # energy at the last periodic journal write
    increments: int = 0  # increments asked for (numbers their idempotency keys)
    increment_asked: Money | None = None  # the whole hold an unanswered increment asks for
    increments_over: bool = False  # one was declined or unanswered: the cap stays
    offered_a: int | None = None  # amperes the pilot offers the session (None: no offer yet)
    # The tariff the session started with: it is priced by it to the end, whatever tariff
    # the kiosk receives meanwhile (`Rules.tariff_key`: None for the config file's). The
    # journal keeps the key; the shell hands the tariff back with an unsettled session.
    tariff_key: str | None = None
    tariff: Tariff | None = field(default=None, compare=False)
    meterage: Meterage | None = field(default=None, compare=False)

    @property
    def currency(self) -> str:
        return self.hold.currency
