"""Rows of drivers' passkeys and of pending WebAuthn challenges (each challenge answered once,
within its lifetime)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.ledger.store import insert_new
from gateway.ledger.web_schema import passkey_challenges, passkeys

CHALLENGE_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Passkey:
    credential_id: str
    driver_id: int
    public_key: str
    sign_count: int


class PasskeyStore:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def challenge(self, ceremony: str, purpose: str, challenge: str, driver_id: int | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(passkey_challenges).values(
                    id=ceremony,
                    purpose=purpose,
                    driver_id=driver_id,
                    challenge=challenge,
                    expires_at=self.clock() + CHALLENGE_LIFETIME,
                )
            )

    def take_challenge(self, ceremony: str, purpose: str) -> tuple[str, int | None] | None:
        """The challenge of a ceremony (and its driver), deleted as it is read: once only."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.delete(passkey_challenges)
                .where(
                    passkey_challenges.c.id == ceremony,
                    passkey_challenges.c.purpose == purpose,
                    passkey_challenges.c.expires_at > self.clock(),
                )
                .returning(passkey_challenges.c.challenge, passkey_challenges.c.driver_id)
            ).first()
        return None if row is None else (str(row.challenge), row.driver_id)

    def add(self, key: Passkey) -> bool:
        with self.engine.begin() as conn:
            return insert_new(
                conn,
                passkeys,
                credential_id=key.credential_id,
                driver_id=key.driver_id,
                public_key=key.public_key,
                sign_count=key.sign_count,
                created_at=self.clock(),
            )

    def find(self, credential_id: str) -> Passkey | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(passkeys).where(passkeys.c.credential_id == credential_id)
            ).first()
        if row is None:
            return None
        return Passkey(
            credential_id=row.credential_id,
            driver_id=int(row.driver_id),
            public_key=row.public_key,
            sign_count=int(row.sign_count),
        )

    def of(self, driver_id: int) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(passkeys.c.credential_id).where(passkeys.c.driver_id == driver_id)
                ).scalars()
            )

    def used(self, credential_id: str, sign_count: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(passkeys)
                .where(passkeys.c.credential_id == credential_id)
                .values(sign_count=sign_count)
            )
