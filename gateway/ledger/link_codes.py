"""One-time link codes: the proof of possession a kiosk gives after a tap.

A kiosk that has just taken a tap (a session's receipt is on its screen) asks for a code
(`POST /v1/link-codes`, naming its own authorization). The code is bound to that
authorization's card token; the driver, signed in on the portal, types it and the card or
RFID token is linked to the account. Whoever reads the kiosk's screen within the code's
lifetime can link the card: the same trust as the receipt's QR link, which is why a code
lives `LIFETIME` and works once.

Rules:
- `CODE_LENGTH` characters of Crockford's base32 (digits and letters without I, L, O, U):
  32^8 ≈ 1.1e12 codes. With a thousand codes open at once across a fleet, one guess finds
  one of them with a chance of 1e-9; the portal allows 10 guesses an hour per driver.
- Only the code's SHA-256 is stored (never the code: not in this table, not in the
  idempotency store, not in a log). The hash of so small a space does not resist whoever
  reads the database for longer than the code lives; it keeps the code out of backups
  and replicas in a usable form once it has expired or been used.
- One code per token: a new code for the same token replaces the one before it.
- Using a code is a compare-and-set on `used_at`: of two drivers typing it at once, one
  links the card; wrong, expired and used codes are refused alike.
- A token already linked to another driver stays theirs (`Drivers.link`); the code is
  spent all the same.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.ledger.schema import authorizations
from gateway.ledger.web_schema import link_codes

LIFETIME = timedelta(minutes=5)
CODE_LENGTH = 8
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
# What a driver may type for each character (Crockford: I and L read as 1, O as 0); spaces
# and hyphens are only grouping.
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0", " ": None, "-": None})
LINKABLE = ("payment", "id_token")  # a card tapped at the kiosk; a web payment's is not


def digest(code: str) -> str:
    return hashlib.sha256(f"link-code:{code}".encode()).hexdigest()


def normalise(typed: str) -> str | None:
    """The code a driver typed, as issued; None if it cannot be one."""
    code = typed.strip().upper().translate(_READ_AS)
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def shown(code: str) -> str:
    """The code as a kiosk shows it: two groups of four."""
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Linkable:
    """What a used code names: the token, its kind, and the last four digits its
    authorization recorded ("" for an RFID token)."""

    card_token: str
    card_kind: str
    last4: str


class LinkCodes:
    """The codes, in the ledger's database."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        *,
        lifetime: timedelta = LIFETIME,
        new_code: Callable[[], str] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.lifetime = lifetime
        self._new_code = new_code or _random_code

    def issue(
        self,
        terminal_id: str | None,
        authorization_id: str,
        *,
        also: Callable[[Connection], None] | None = None,
    ) -> Issued | None:
        """A new code for the card of `authorization_id`, which must be `terminal_id`'s
        (None: any terminal, the development mode); None when there is no such
        authorization or its card cannot be linked (a web payment). `also` runs in the
        transaction that stores the code (the request's key is stored there)."""
        a = authorizations.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(a.terminal_id, a.card_token, a.card_kind).where(a.id == authorization_id)
            ).first()
        if row is None or row.card_kind not in LINKABLE or not row.card_token:
            return None
        if terminal_id is not None and row.terminal_id != terminal_id:
            return None
        expires_at = self.clock() + self.lifetime
        for _ in range(5):  # a code equal to another token's: draw again
            code = self._new_code()
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.delete(link_codes).where(link_codes.c.card_token == row.card_token)
                    )
                    conn.execute(
                        sa.insert(link_codes).values(
                            card_token=row.card_token,
                            code_sha256=digest(code),
                            card_kind=row.card_kind,
                            authorization_id=authorization_id,
                            expires_at=expires_at,
                        )
                    )
                    if also is not None:
                        also(conn)
            except IntegrityError:
                continue
            return Issued(code=code, expires_at=expires_at)
        raise RuntimeError("no free link code after 5 draws")  # 1.1e12 codes: a broken source

    def use(self, code: str) -> Linkable | None:
        """Spend a code: what it links, or None if it is unknown, expired or used."""
        stamp = self.clock()
        c = link_codes.c
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.update(link_codes)
                .where(c.code_sha256 == digest(code), c.used_at.is_(None), c.expires_at > stamp)
                .values(used_at=stamp)
                .returning(c.card_token, c.card_kind, c.authorization_id)
            ).first()
            if row is None:
                return None
            last4 = conn.execute(
                sa.select(authorizations.c.card_last4).where(
                    authorizations.c.id == row.authorization_id
                )
            ).scalar()
        return Linkable(card_token=row.card_token, card_kind=row.card_kind, last4=last4 or "")


def _random_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
