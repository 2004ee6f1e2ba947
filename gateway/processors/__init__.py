"""Payment-processor adapters: one small interface, one module per processor."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class ProcessorTimeout(Exception):
    """The processor did not answer in time: the outcome is unknown."""


class Decision(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearCard:
    """A payment card's data as the gateway decrypted it from the terminal's blob.

    It exists in memory only, for the one call to `Processor.hold`: never logged, stored or
    answered. The repr shows nothing of it.
    """

    pan: str
    expiry: str  # YYMM
    pan_sequence: str | None
    track2: str | None  # hex, as the card gave it (EMV tag 57)
    emv: tuple[tuple[str, str], ...]  # (tag hex, value hex) in the kernel's order

    def __repr__(self) -> str:
        return "ClearCard(<hidden>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRef:
    """What the gateway knows of a card: never a clear PAN outside the adapter.

    ``clear`` is the decrypted card data (payment cards, when the gateway holds the fleet's
    keys); an adapter that sends card data to its processor takes it from there, never from
    what the terminal claimed in ``last4``.
    """

    kind: str
    token: str
    brand: str
    last4: str
    expiry: str | None
    payload: dict[str, str]
    clear: ClearCard | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldResult:
    decision: Decision
    amount_minor: int  # approved amount (partial approvals approve less)
    reference: str
    reason: str = ""


class Processor(Protocol):
    """A payment processor as the gateway uses it. Every call carries the gateway's own
    idempotency key so a retried call never holds or captures twice at the processor."""

    name: str
    supports_increment: bool  # whether `increment` may be called (incremental authorization)

    def hold(self, *, key: str, card: CardRef, amount_minor: int, currency: str) -> HoldResult:
        """Place a hold (pre-authorization). Raises `ProcessorTimeout` when unknown."""
        ...

    def increment(self, *, key: str, reference: str, amount_minor: int) -> HoldResult:
        """Raise the hold to `amount_minor` in all (incremental authorization; only when
        `supports_increment`). The result's amount is the whole hold afterwards: the old one
        if declined, possibly less than asked if partially approved. Raises
        `ProcessorTimeout` when unknown."""
        ...

    def capture(self, *, key: str, reference: str, amount_minor: int) -> None:
        """Capture `amount_minor` (≤ the hold) and release the rest."""
        ...

    def release(self, *, key: str, reference: str) -> None:
        """Release the whole hold (void / reversal)."""
        ...
