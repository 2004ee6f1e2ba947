"""Operator sign-in: argon2id password hashes (argon2-cffi, RFC 9106 parameters), an optional
TOTP second factor (RFC 6238, pyotp), lock-out after failed attempts, and the rate limits of
`gateway.web.throttle`.

What a failed sign-in tells the visitor is the same whatever failed (unknown name, wrong
password, wrong code, locked account), so the form cannot be used to find account names.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.ledger.operators import Operator, Operators
from gateway.web.throttle import PER_ACCOUNT, PER_ADDRESS, Throttle

LOCK_AFTER = 5  # failed sign-ins in a row lock the account ...
LOCK_FOR = timedelta(minutes=15)  # ... for this long
MIN_PASSWORD = 12  # NIST SP 800-63B asks for at least 8; a console holding money asks more

# RFC 9106's second recommended option (64 MiB, t=3, p=4) is argon2-cffi's default profile.
HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the name is unknown or locked, so such a sign-in costs the same
    time as a real one. Made on first use, not at import (a gateway that starts pays nothing)."""
    return HASHER.hash("no operator has this password")


class Outcome(enum.Enum):
    SIGNED_IN = "signed_in"
    REFUSED = "refused"  # wrong name, password or code, or a locked account: said the same way
    THROTTLED = "throttled"  # too many attempts from this address or on this name: 429


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    operator: Operator | None = None


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return HASHER.hash(password)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (as text or a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="ev-terminal console")


class OperatorSignIn:
    def __init__(
        self, operators: Operators, throttle: Throttle, clock: Callable[[], datetime]
    ) -> None:
        self.operators = operators
        self.throttle = throttle
        self.clock = clock

    def attempt(self, address: str, username: str, password: str, code: str) -> Result:
        """Check one sign-in: rate limits, the account, its lock, the password, the code."""
        if not (
            self.throttle.allow(f"ip:{address}", PER_ADDRESS)
            and self.throttle.allow(f"user:{username.lower()}", PER_ACCOUNT)
        ):
            return Result(Outcome.THROTTLED)
        operator = self.operators.by_name(username.lower())
        if operator is None:
            _verify(_dummy_hash(), password)
            return Result(Outcome.REFUSED)
        stamp = self.clock()
        if operator.locked_until is not None and operator.locked_until > stamp:
            _verify(_dummy_hash(), password)
            return Result(Outcome.REFUSED)
        if not _verify(operator.password_hash, password) or not _code_ok(operator, code, stamp):
            self.operators.failed(operator, lock_after=LOCK_AFTER, lock_until=stamp + LOCK_FOR)
            return Result(Outcome.REFUSED)
        self.operators.succeeded(operator)
        return Result(Outcome.SIGNED_IN, operator)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _code_ok(operator: Operator, code: str, stamp: datetime) -> bool:
    if operator.totp_secret is None:
        return True
    # One step either side (RFC 6238 section 5.2: allow for clock drift).
    return pyotp.TOTP(operator.totp_secret).verify(code.strip(), for_time=stamp, valid_window=1)
