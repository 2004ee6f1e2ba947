"""Browser sessions and CSRF tokens for the console and the portal.

- The session cookie holds a random token (256 bits); the database keeps only its SHA-256, the
  kind (operator or driver), the subject and the session's CSRF token. Sessions end at a fixed
  time (no sliding renewal) or at sign-out, and every worker sees the same rows.
- Cookies are `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/` with the `__Host-` prefix, so a
  browser sends them only over HTTPS (or to localhost), never to scripts, never on a request
  another site starts, and no subdomain can set them.
- CSRF: every form of a signed-in page carries the session's token (synchroniser token, OWASP
  CSRF cheat sheet). A form shown before sign-in (the sign-in form itself) uses a double-submit
  token: a random cookie and the same value in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from gateway.ledger.store import aware
from gateway.ledger.web_schema import web_sessions

OPERATOR_COOKIE = "__Host-ev-console"
DRIVER_COOKIE = "__Host-ev-account"
PRE_SESSION_COOKIE = "__Host-ev-form"  # the double-submit token of forms before sign-in
OPERATOR_LIFETIME = timedelta(hours=8)  # one working day, then sign in again
DRIVER_LIFETIME = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSession:
    """A signed-in browser: `kind` operator|driver, `subject` the operator's or driver's id."""

    token_sha256: str
    kind: str
    subject: str
    csrf: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


class Sessions:
    """Sessions of one kind, over the gateway's database."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        *,
        kind: str,
        cookie: str,
        lifetime: timedelta,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.kind = kind
        self.cookie = cookie
        self.lifetime = lifetime

    def start(self, response: Response, subject: str) -> WebSession:
        """A new session for `subject`, its cookie set on `response`."""
        token = secrets.token_urlsafe(32)
        stamp = self.clock()
        session = WebSession(
            token_sha256=_digest(token),
            kind=self.kind,
            subject=subject,
            csrf=secrets.token_urlsafe(32),
            expires_at=stamp + self.lifetime,
        )
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(web_sessions).values(
                    token_sha256=session.token_sha256,
                    kind=self.kind,
                    subject=subject,
                    csrf=session.csrf,
                    created_at=stamp,
                    expires_at=session.expires_at,
                )
            )
        set_cookie(response, self.cookie, token, int(self.lifetime.total_seconds()))
        return session

    def find(self, request: Request) -> WebSession | None:
        """The request's live session of this kind, or None."""
        token = request.cookies.get(self.cookie)
        if not token:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(web_sessions).where(
                    web_sessions.c.token_sha256 == _digest(token),
                    web_sessions.c.kind == self.kind,
                )
            ).first()
        if row is None or aware(row.expires_at) <= self.clock():
            return None
        return WebSession(
            token_sha256=row.token_sha256,
            kind=row.kind,
            subject=row.subject,
            csrf=row.csrf,
            expires_at=aware(row.expires_at),
        )

    def end(self, session: WebSession, response: Response) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(web_sessions).where(web_sessions.c.token_sha256 == session.token_sha256)
            )
        response.delete_cookie(self.cookie, path="/", secure=True, httponly=True)

    def end_all(self, subject: str) -> int:
        """End every session of `subject` (a locked or removed account)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.delete(web_sessions).where(
                    web_sessions.c.kind == self.kind, web_sessions.c.subject == subject
                )
            )
            return int(result.rowcount or 0)

    def expire(self) -> int:
        """Forget sessions past their end."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.delete(web_sessions).where(web_sessions.c.expires_at < self.clock())
            )
            return int(result.rowcount or 0)


def csrf_ok(expected: str, given: str | None) -> bool:
    """Whether a form's token is the one expected (constant time)."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def pre_session_token(request: Request) -> str:
    """The double-submit token for a form shown before sign-in: the visitor's cookie if it has
    one, else a new one (`remember_pre_session` sets it on the response)."""
    return request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(32)


def remember_pre_session(response: Response, token: str) -> None:
    set_cookie(response, PRE_SESSION_COOKIE, token, 3600)


def pre_session_ok(request: Request, given: str | None) -> bool:
    cookie = request.cookies.get(PRE_SESSION_COOKIE)
    return cookie is not None and csrf_ok(cookie, given)
