"""One-time, expiring pay codes: the code in the QR a kiosk shows (`/pay/{code}`).

A kiosk asks for its code (`POST /v1/pay-codes`) with what its idle screen offers: the
station, the hold, the price lines in each of its languages (AFIR: the price before the
start, as the kiosk shows it). It gets the code it has while that one is open and has at
least `REFRESH` of its lifetime left, else a new one; the old one stays valid until it
expires, so a driver who scanned it a moment ago can still pay.

A code is used once. Paying claims it first (`claim`: a compare-and-set from `open` to
`paying`, naming the payment), so of two phones paying one code at once one wins and the
other is never charged. A payment that fails gives the code back (`release`); one that
succeeds spends it (`spend`), and the kiosk, told at its next poll, asks for a new one.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ledger.schema import pay_codes
from gateway.ledger.store import Ledger, aware

OPEN = "open"
PAYING = "paying"
SPENT = "spent"

LIFETIME = timedelta(minutes=15)  # scan, choose, pay: the start must come within it
REFRESH = timedelta(minutes=5)  # a kiosk's code with less left than this is replaced


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """What the kiosk shows before a start, as it sent it."""

    station: str
    hold_minor: int
    currency: str
    price: dict[str, list[str]]  # language -> the price lines as the kiosk shows them
    language: str  # the station's own language

    def to_json(self) -> str:
        return json.dumps(
            {
                "station": self.station,
                "hold_minor": self.hold_minor,
                "currency": self.currency,
                "price": self.price,
                "language": self.language,
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> Offer:
        data: dict[str, Any] = json.loads(text)
        return Offer(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class PayCode:
    code: str
    terminal_id: str
    state: str
    offer: Offer
    expires_at: datetime
    authorization_id: str | None

    def open_at(self, now: datetime) -> bool:
        return self.state == OPEN and now < self.expires_at


def _code(row: Any) -> PayCode:
    return PayCode(
        code=row.code,
        terminal_id=row.terminal_id,
        state=row.state,
        offer=Offer.from_json(row.offer),
        expires_at=aware(row.expires_at),
        authorization_id=row.authorization_id,
    )


class PayCodes:
    """The codes, in the ledger's database."""

    def __init__(
        self, ledger: Ledger, *, lifetime: timedelta = LIFETIME, refresh: timedelta = REFRESH
    ) -> None:
        self.ledger = ledger
        self.lifetime = lifetime
        self.refresh = refresh

    def get(self, code: str) -> PayCode | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(sa.select(pay_codes).where(pay_codes.c.code == code)).first()
        return _code(row) if row is not None else None

    def for_terminal(self, terminal_id: str, offer: Offer) -> PayCode:
        """The terminal's code to show now (see the module docstring)."""
        now = self.ledger.clock()
        c = pay_codes.c
        with self.ledger.write() as conn:
            row = conn.execute(
                sa.select(pay_codes)
                .where(c.terminal_id == terminal_id, c.state == OPEN)
                .where(c.expires_at > now + self.refresh, c.offer == offer.to_json())
                .order_by(c.expires_at.desc())
                .limit(1)
            ).first()
            if row is not None:
                return _code(row)
            # 96 random bits, URL-safe: short enough for a small QR, never guessed.
            code = secrets.token_urlsafe(12)
            conn.execute(
                sa.insert(pay_codes).values(
                    code=code,
                    terminal_id=terminal_id,
                    state=OPEN,
                    offer=offer.to_json(),
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
        found = self.get(code)
        assert found is not None
        return found

    def claim(self, code: str, authorization_id: str) -> bool:
        """Make the code this payment's, if it is open and not expired (compare-and-set)."""
        now = self.ledger.clock()
        c = pay_codes.c
        with self.ledger.write() as conn:
            changed = conn.execute(
                sa.update(pay_codes)
                .where(c.code == code, c.state == OPEN, c.expires_at > now)
                .values(state=PAYING, authorization_id=authorization_id, claimed_at=now)
            ).rowcount
        return bool(changed)

    def release(self, code: str, authorization_id: str) -> None:
        """The payment failed: the code is open again (if it was this payment's)."""
        c = pay_codes.c
        with self.ledger.write() as conn:
            conn.execute(
                sa.update(pay_codes)
                .where(c.code == code, c.state == PAYING, c.authorization_id == authorization_id)
                .values(state=OPEN, authorization_id=None, claimed_at=None)
            )

    def spend(self, code: str, authorization_id: str) -> bool:
        """The payment succeeded: the code is used up. True for the one caller that spent it
        (compare-and-set from `paying`); a second caller finding the same payment done (the
        page's refresh racing a webhook) gets False."""
        with self.ledger.write() as conn:
            return self.spend_in(conn, code, authorization_id)

    @staticmethod
    def spend_in(conn: Connection, code: str, authorization_id: str) -> bool:
        """`spend` inside the caller's transaction: the start command for the kiosk is
        written in the same one (`Commands.start`'s guard), so the code is never spent
        without it, whatever process dies when."""
        c = pay_codes.c
        changed = conn.execute(
            sa.update(pay_codes)
            .where(c.code == code, c.authorization_id == authorization_id)
            .where(c.state == PAYING)
            .values(state=SPENT)
        ).rowcount
        return bool(changed)

    def waiting_payments(self) -> list[str]:
        """The payments that claimed a code and have not finished (a Lightning invoice waiting
        for the driver's wallet): their authorization ids."""
        c = pay_codes.c
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.authorization_id).where(
                    c.state == PAYING, c.authorization_id.is_not(None)
                )
            ).all()
        return [str(r.authorization_id) for r in rows]

    def for_authorization(self, authorization_id: str) -> PayCode | None:
        """The code a payment was made on."""
        with self.ledger.engine.connect() as conn:
            row = conn.execute(
                sa.select(pay_codes).where(pay_codes.c.authorization_id == authorization_id)
            ).first()
        return _code(row) if row is not None else None

    def current_open(self, code: str) -> bool:
        """Whether a kiosk may go on showing `code` (open, not expired)."""
        found = self.get(code)
        return found is not None and found.open_at(self.ledger.clock())
