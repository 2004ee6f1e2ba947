"""Payment-processor adapters: the port (`port.py`), the card as the gateway holds it (here), and
one module per processor."""

from __future__ import annotations

from dataclasses import dataclass, field


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
