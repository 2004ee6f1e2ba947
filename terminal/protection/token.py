"""Card tokens and PAN masking: how a card is recognised without its number being kept.

A **card token** is HMAC-SHA256 (RFC 2104, FIPS 198-1), keyed with the fleet token key, over
a domain label and the PAN's digits, truncated to 120 bits and written as 24 lower-case
base32 characters behind a type prefix: ``ct_`` for payment cards, ``rt_`` for RFID UIDs.
Every kiosk of a fleet holds the same token key, so the same card gets the same token on
every kiosk: tap-to-stop works wherever the session started, and the gateway's history joins
on it. Without the key a token reveals nothing about the PAN (a bare hash of a PAN would
fall to enumerating the ~10^9 plausible PANs of an issuer range).

What goes in, and why (decided here, once):

- **The PAN's digits only; not the PAN sequence number (EMV tag 5F34).** 5F34 is optional:
  a card may omit it, and a magnetic-stripe-mode read carries none, so the same card could
  otherwise get two tokens. A renewed card with the same PAN keeps the customer's history.
  The cost: two cards sharing a PAN (a household's cards on one account) share a token and
  could stop each other's session, which stays within one account holder.
- **A phone wallet's device PAN (DPAN, an EMV payment token) is its own card.** It differs
  from the plastic card's PAN, so phone and card get different tokens and each stops only
  its own session. Linking them would need the Payment Account Reference (EMV tag 9F24),
  which not every card sends; it is not used.
- **RFID UIDs** (ISO/IEC 14443-3 UID, 4, 7 or 10 bytes) are tokenised under their own
  domain label, so no UID can ever produce a card token or the other way round.

120 bits: the chance that any two of a billion cards share a token is about 2^-61.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from terminal.errors import CardError, KeyMaterialError

# Domain labels: version them so a change of canonical form can never collide with tokens
# already stored by the gateway.
_CARD_DOMAIN = b"ev-terminal/card-token/v1\x00"
_RFID_DOMAIN = b"ev-terminal/rfid-token/v1\x00"
CARD_TOKEN_PREFIX = "ct_"
RFID_TOKEN_PREFIX = "rt_"
_TOKEN_BYTES = 15  # 120 bits: a multiple of 5 bytes, so base32 needs no padding

# ISO/IEC 7812-1: a PAN has 8 to 19 digits (8 since the 2017 edition); payment cards in use
# have 12 or more, which is the floor accepted here.
PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19

TOKEN_KEY_LENGTH = 32  # HMAC-SHA256 key as long as the hash (RFC 2104 §3)
MASK = "\u2022\u2022\u2022\u2022"  # "••••"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenKey:
    """The fleet token key: 32 secret bytes shared by every kiosk and the gateway of a fleet.

    Its repr hides the key, so logging the object by mistake leaks nothing.
    """

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != TOKEN_KEY_LENGTH:
            raise KeyMaterialError(
                f"the fleet token key is {TOKEN_KEY_LENGTH} bytes, not {len(self.secret)}"
            )

    def __repr__(self) -> str:
        return "TokenKey(<hidden>)"


def canonical_pan(pan: str) -> str:
    """The PAN's digits, with the spaces and dashes people and printers put in removed.

    Anything else, or a length outside 12..19 digits, is a malformed card answer (CardError).
    """
    digits = pan.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit()):
        raise CardError("the PAN has characters other than digits")
    if not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
        raise CardError(f"a PAN has {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} digits")
    return digits


def _encode(prefix: str, mac: bytes) -> str:
    return prefix + base64.b32encode(mac[:_TOKEN_BYTES]).decode("ascii").lower()


def card_token(key: TokenKey, pan: str) -> str:
    """The fleet-wide token of a payment card (or wallet device PAN), e.g. ``ct_…`` (27 chars)."""
    message = _CARD_DOMAIN + canonical_pan(pan).encode("ascii")
    return _encode(CARD_TOKEN_PREFIX, hmac.new(key.secret, message, hashlib.sha256).digest())


def rfid_token(key: TokenKey, uid: bytes) -> str:
    """The fleet-wide token of an RFID identification card's UID, e.g. ``rt_…``."""
    if not uid:
        raise CardError("an RFID UID is not empty")
    message = _RFID_DOMAIN + uid
    return _encode(RFID_TOKEN_PREFIX, hmac.new(key.secret, message, hashlib.sha256).digest())


def last4(pan: str) -> str:
    """The last four digits, the only part of a PAN shown or stored (PCI DSS 3.4.1)."""
    return canonical_pan(pan)[-4:]


def mask_pan(pan: str) -> str:
    """The PAN as a driver sees it on screen and receipt: ``•••• 0010``."""
    return f"{MASK} {last4(pan)}"
