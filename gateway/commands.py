"""Commands for terminals: "start a session paid on the web, with this hold as its cost
limit" and "stop that session" (pay by phone; OCPP 2.1 C25 is the same pattern).

A command is a row in `kiosk_commands`. The terminal fetches its waiting commands with a long
poll (`GET /v1/commands`, `gateway.api.commands`) and answers each through its outbox
(`POST /v1/commands/{id}/answer`, idempotent). A start answered "not started" (the charging
point is busy, out of order, the code expired) has its hold released at once; a start the
terminal never answered (offline) is given up `grace` (2 minutes) after the code's lifetime
and its hold released (`CommandExpiry`). The terminal never takes a start at or after
`expires_at`, and offers energy only once this gateway took its "started" (refused here once
the start expired and its hold was released), so no session charges on a released hold.
States change by compare-and-set, so an answer and the expiry racing on one command end one
way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.jobs.runner import Job
from gateway.ledger.idempotency import StoredAnswer
from gateway.ledger.schema import APPROVED, authorizations, kiosk_commands, pay_codes
from gateway.ledger.store import Ledger, aware
from gateway.pay.codes import SPENT
from gateway.payments import Payments
from gateway.payments.answers import Refusal
from gateway.processors.methods import WEB_METHODS

log = logging.getLogger("ev_gateway.commands")

PENDING = "pending"
STARTED = "started"
NOT_STARTED = "not_started"
RECEIVED = "received"
EXPIRED = "expired"

REDELIVER_AFTER = timedelta(seconds=10)  # a command fetched but not answered is sent again
# For a start's "started" to come back after the code expired. The kiosk takes a start only
# before `expires_at` and offers energy only once this gateway took its "started", giving up
# a start not confirmed within its authorization timeout (20 s by default): past that, no
# answer can still start a session, and the driver's money is released.
GRACE = timedelta(minutes=2)
STOP_LIFETIME = timedelta(minutes=10)  # a phone's stop waits this long for an offline kiosk
# The backstop for a web hold with no start and no spent code: a code's lifetime
# (gateway.pay.codes.LIFETIME) past the grace.
UNSTARTED_AFTER = timedelta(minutes=15)
EXPIRE_EVERY_S = 30.0


def _nothing(_conn: Connection, _answer: StoredAnswer) -> None:
    """The hold's own answer is not a request's: nothing to store for a key."""


def _ms_until(at: datetime, now: datetime) -> int:
    return max(0, (aware(at) - now) // timedelta(milliseconds=1))


class Bell:
    """Wakes this worker's long polls when a command is written here (other workers' polls
    look at the database every `POLL_S`)."""

    POLL_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def ring(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout_s: float) -> None:
        """Until rung, or `timeout_s` (at most POLL_S) has passed."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout=min(timeout_s, self.POLL_S))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)


class Commands:
    """Writes, hands out and settles the terminals' commands."""

    def __init__(
        self,
        payments: Payments,
        *,
        bell: Bell | None = None,
        redeliver_after: timedelta = REDELIVER_AFTER,
        grace: timedelta = GRACE,
    ) -> None:
        self.payments = payments
        self.ledger: Ledger = payments.ledger
        self.bell = bell or Bell()
        self.redeliver_after = redeliver_after
        self.grace = grace

    def _insert(
        self,
        *,
        terminal_id: str,
        kind: str,
        aid: str,
        body: dict[str, Any],
        expires: datetime,
        guard: Callable[[Connection], bool] | None = None,
    ) -> str | None:
        command_id = uuid.uuid4().hex
        body = {"command_id": command_id, "kind": kind, "session_id": aid, **body}
        with self.ledger.write() as conn:
            if guard is not None and not guard(conn):
                return None
            conn.execute(
                sa.insert(kiosk_commands).values(
                    id=command_id,
                    terminal_id=terminal_id,
                    kind=kind,
                    authorization_id=aid,
                    state=PENDING,
                    body=json.dumps(body, sort_keys=True),
                    expires_at=expires,
                    created_at=self.ledger.clock(),
                )
            )
        self.bell.ring()
        log.info("event=command kind=%s command=%s authorization=%s", kind, command_id, aid)
        return command_id

    def start(
        self,
        authorization_id: str,
        *,
        expires_at: datetime,
        brand: str,
        last4: str,
        guard: Callable[[Connection], bool] | None = None,
    ) -> str | None:
        """Ask the authorization's terminal to start a session with its approved hold as
        the cost limit, before `expires_at`. The command's id; None when `guard`, run first
        in the same transaction (the payment page spends its code there), said no: then
        nothing is written. A code is never spent without its start, nor a start written for
        a code someone else spent."""
        row = self.ledger.fetch(authorization_id)
        if row is None or row.status != APPROVED or row.amount_authorized is None:
            raise ValueError(f"authorization {authorization_id} holds no approved amount")
        return self._insert(
            terminal_id=row.terminal_id,
            kind="start",
            aid=authorization_id,
            expires=expires_at,
            body={
                "cost_limit": {"minor": int(row.amount_authorized), "currency": row.currency},
                "brand": brand[:32] or "Web",
                "last4": last4 if last4.isdigit() and len(last4) <= 4 else "",
            },
            guard=guard,
        )

    def stop(self, authorization_id: str) -> str | None:
        """Ask the terminal to stop the session it started for this authorization (the phone
        page's stop button); None if no session was started for it, or it is settled."""
        row = self.ledger.fetch(authorization_id)
        if row is None or row.status != APPROVED or self.state_of(authorization_id) != STARTED:
            return None
        return self._insert(
            terminal_id=row.terminal_id,
            kind="stop",
            aid=authorization_id,
            expires=self.ledger.clock() + STOP_LIFETIME,
            body={},
        )

    def stop_requested(self, authorization_id: str) -> bool:
        """Whether a stop was asked for this authorization's session."""
        with self.ledger.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(kiosk_commands.c.id)
                    .where(kiosk_commands.c.authorization_id == authorization_id)
                    .where(kiosk_commands.c.kind == "stop")
                ).first()
                is not None
            )

    def state_of(self, authorization_id: str) -> str | None:
        """Where the authorization's start command stands (None: there is none)."""
        with self.ledger.engine.connect() as conn:
            return conn.execute(
                sa.select(kiosk_commands.c.state)
                .where(kiosk_commands.c.authorization_id == authorization_id)
                .where(kiosk_commands.c.kind == "start")
            ).scalar()

    def waiting(self, terminal_id: str) -> list[dict[str, Any]]:
        """The terminal's commands to hand out now: pending, not handed out in the last
        `redeliver_after`, and (a start) not expired. Marks them handed out."""
        now = self.ledger.clock()
        c = kiosk_commands.c
        with self.ledger.write() as conn:
            rows = conn.execute(
                sa.select(c.id, c.kind, c.body, c.expires_at)
                .where(c.terminal_id == terminal_id, c.state == PENDING, c.expires_at > now)
                .where(
                    sa.or_(c.delivered_at.is_(None), c.delivered_at < now - self.redeliver_after)
                )
                .order_by(c.created_at)
            ).all()
            if rows:
                conn.execute(
                    sa.update(kiosk_commands)
                    .where(c.id.in_([r.id for r in rows]))
                    .values(delivered_at=now)
                )
        # A start says how long it may still begin, from now: the terminal counts that on
        # its own clock, so a terminal whose clock is off never starts after the code expired.
        return [
            {**json.loads(r.body), "expires_in_ms": _ms_until(r.expires_at, now)}
            if r.kind == "start"
            else json.loads(r.body)
            for r in rows
        ]

    def answer(
        self, command_id: str, terminal_id: str | None, *, session_id: str, status: str, reason: str
    ) -> StoredAnswer:
        """The terminal's answer. A start "not_started" releases the hold first (a retry
        after a lost answer finds it released and goes on); "started" after the command
        expired is refused (409 `command_expired`: its hold was released)."""
        with self.ledger.engine.connect() as conn:
            row = conn.execute(
                sa.select(kiosk_commands).where(kiosk_commands.c.id == command_id)
            ).first()
        if row is None or (terminal_id is not None and row.terminal_id != terminal_id):
            raise Refusal(404, "unknown_command", "no such command for this terminal")
        if session_id != row.authorization_id:
            raise Refusal(400, "session_mismatch", "the command was for another session")
        expected = {"start": (STARTED, NOT_STARTED), "stop": (RECEIVED,)}[row.kind]
        if status not in expected:
            raise Refusal(400, "invalid_status", f"a {row.kind} is answered {expected}")
        if row.state not in (PENDING, status):
            raise Refusal(409, f"command_{row.state}", f"the command is {row.state} already")
        if status == NOT_STARTED:
            release = f"not_started:{reason}"[:64]
            self.payments.void(row.authorization_id, row.terminal_id, release, _nothing)
        with self.ledger.write() as conn:
            conn.execute(
                sa.update(kiosk_commands)
                .where(kiosk_commands.c.id == command_id, kiosk_commands.c.state == PENDING)
                .values(state=status, reason=reason[:64] or None, answered_at=self.ledger.clock())
            )
            state = conn.execute(
                sa.select(kiosk_commands.c.state).where(kiosk_commands.c.id == command_id)
            ).scalar()
        if state != status:  # the expiry won the race
            raise Refusal(409, f"command_{state}", f"the command is {state} already")
        log.info(
            "event=command_answered command=%s status=%s reason=%s", command_id, status, reason
        )
        return StoredAnswer(
            status_code=200,
            body={"command_id": command_id, "authorization_id": session_id, "status": "answered"},
        )

    def expire(self) -> int:
        """Give up the starts nobody answered by `expires_at` + grace and release their
        holds. How many were given up."""
        now = self.ledger.clock()
        c = kiosk_commands.c
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.id, c.kind, c.terminal_id, c.authorization_id).where(
                    c.state == PENDING, c.expires_at < now - self.grace
                )
            ).all()
        given_up = self._release_left_holds() + self._release_unstarted_web_holds(now)
        for row in rows:
            with self.ledger.write() as conn:
                won = conn.execute(
                    sa.update(kiosk_commands)
                    .where(c.id == row.id, c.state == PENDING)
                    .values(state=EXPIRED, answered_at=now)
                ).rowcount
            if not won or row.kind != "start":
                continue
            given_up += 1
            log.warning(
                "event=command_expired command=%s authorization=%s", row.id, row.authorization_id
            )
            try:
                self.payments.void(row.authorization_id, row.terminal_id, "start_expired", _nothing)
            except Exception:
                # The reconciler and the next round see the hold; nothing is lost.
                log.exception("event=command_release_failed authorization=%s", row.authorization_id)
        return given_up

    def _release_unstarted_web_holds(self, now: datetime) -> int:
        """Web holds (the payment page's) approved with no start command at all, released
        here. A code is spent in the transaction that writes its start, so a spent code
        without one was paid after it expired (`Checkout` releases that hold itself; the
        gateway may have died first): released at the next round. A code still being paid
        is finished by `WaitingPayments` within seconds (started, or released when late).
        Any other such hold (the processor's answer lost, the hold found later by the
        reconciler, no code at all) is released once no code could still be paid for it:
        the longest a code lives plus the grace. How many."""
        c, a, p = kiosk_commands.c, authorizations.c, pay_codes.c
        started = sa.select(c.id).where(c.authorization_id == a.id, c.kind == "start")
        spent = sa.select(p.code).where(
            p.authorization_id == a.id, p.state == SPENT, p.expires_at < now
        )
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                sa.select(a.id, a.terminal_id)
                .where(a.card_kind.in_(sorted(WEB_METHODS)), a.status == APPROVED)
                .where(a.op.is_(None), ~sa.exists(started))
                .where(
                    sa.or_(
                        sa.exists(spent),
                        a.created_at < now - self.grace - UNSTARTED_AFTER,
                    )
                )
            ).all()
        for row in rows:
            log.warning("event=web_hold_never_started authorization=%s", row.id)
            try:
                self.payments.void(row.id, row.terminal_id, "never_started", _nothing)
            except Exception:
                log.exception("event=command_release_failed authorization=%s", row.id)
        return len(rows)

    def _release_left_holds(self) -> int:
        """Holds whose start was given up or refused and whose release did not happen then
        (the processor did not answer): released now. How many were tried."""
        c, a = kiosk_commands.c, authorizations.c
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.terminal_id, c.authorization_id)
                .join(authorizations, a.id == c.authorization_id)
                .where(c.kind == "start", c.state.in_((EXPIRED, NOT_STARTED)))
                .where(a.status == APPROVED, a.op.is_(None))
            ).all()
        for row in rows:
            try:
                self.payments.void(
                    row.authorization_id, row.terminal_id, "start_given_up", _nothing
                )
            except Exception:
                log.exception("event=command_release_failed authorization=%s", row.authorization_id)
        return 0


class CommandExpiry(Job):
    """Runs `Commands.expire` every `every_s` seconds, in one worker at a time."""

    name = "command-expiry"

    def __init__(self, commands: Commands, every_s: float = EXPIRE_EVERY_S) -> None:
        super().__init__(commands.ledger, every_s)
        self.commands = commands

    def work(self) -> int:
        return self.commands.expire()
