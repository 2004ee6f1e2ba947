"""The command channel: what the gateway asks of the kiosk (start a session paid on the web,
stop one), over the kiosk's own link to it (mutual TLS in production).

The kiosk keeps one long poll open (`GET /v1/commands?wait=5`): the gateway answers at once
with the commands waiting for this terminal, or after `wait` seconds with none. A failed poll
(no route, refused connection, 5xx, a malformed body) is tried again after a bounded,
jittered back-off (1 s doubling to 60 s), reset by the next good answer.

Every command is journaled (`commands` table) before anything acts on it, and only then
posted to the daemon as an event; the gateway sends a command again until it has its answer,
and a command already journaled is not posted twice. Answers go through the outbox in the
session's lane (`command_answer` rows), so a start's capture or void always follows its
answer; a void queued while "started" is still unsent (the session given up before the
gateway took it) turns that answer into "not started". A restart between journaling a start
and answering it posts it again (`replay`); the machine starts it only within the code's
lifetime (`expires_at`), never after.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from hardware.clock import Clock
from terminal.core.events import Event, PayCodeChanged, StopRequested, WebPaymentAuthorized
from terminal.errors import GatewayRefused, UplinkError
from terminal.money import MINOR_UNITS, Money
from terminal.shell.gateway_client import GatewayClient
from terminal.shell.journal import Journal

log = logging.getLogger("ev_terminal.commands")

REFRESH_MS = 5 * 60_000  # ask for a new pay code when the shown one has less than this left
Offer = Callable[[], dict[str, Any]]
"""What the idle screen offers, for the gateway's payment page: station, hold, the price
lines in each language (`POST /v1/pay-codes`)."""

WAIT_S = 5  # how long the gateway may hold a poll open: short, so that a stopping kiosk or
# gateway never waits long for it (a command wakes the open poll at once, whatever this is)
BACKOFF_BASE_MS = 1_000
BACKOFF_CAP_MS = 60_000
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # the wire's ID_PATTERN (contract/openapi.json)
_LAST4 = re.compile(r"^[0-9]{0,4}$")


class CommandInvalid(ValueError):
    """A command from the gateway that is not well-formed: it is not acted on."""


def queue_answer(
    journal: Journal, *, command_id: str, session_id: str, status: str, reason: str, at: datetime
) -> None:
    """Queue the answer to a command in its session's lane and mark the command answered
    (one journal transaction with the caller's)."""
    with journal.atomic():
        journal.enqueue(
            lane=session_id,
            kind="command_answer",
            idem_key=f"{command_id}:answer",
            path=f"/v1/commands/{command_id}/answer",
            body={"session_id": session_id, "status": status, "reason": reason},
            at=at,
        )
        journal.mark_command_answered(command_id)


def _text(item: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise CommandInvalid(f"{key} is not well-formed")
    return value


def parse_start(item: dict[str, Any], stamp: dict[str, Any]) -> WebPaymentAuthorized:
    """A start command as the machine's event; CommandInvalid if it is not well-formed."""
    limit = item.get("cost_limit")
    if not isinstance(limit, dict) or set(limit) != {"minor", "currency"}:
        raise CommandInvalid("cost_limit is not an amount")
    minor, currency = limit["minor"], limit["currency"]
    if not isinstance(minor, int) or isinstance(minor, bool) or minor <= 0:
        raise CommandInvalid("cost_limit.minor is not a positive integer")
    if currency not in MINOR_UNITS:
        raise CommandInvalid("cost_limit.currency is not a known currency")
    try:
        expires_at = datetime.fromisoformat(str(item.get("expires_at")))
    except ValueError:
        raise CommandInvalid("expires_at is not a time") from None
    if expires_at.tzinfo is None:
        raise CommandInvalid("expires_at has no time zone")
    brand, last4 = item.get("brand", "Web"), item.get("last4", "")
    if not isinstance(brand, str) or not 0 < len(brand) <= 32:
        raise CommandInvalid("brand is not well-formed")
    if not isinstance(last4, str) or not _LAST4.match(last4):
        raise CommandInvalid("last4 is not well-formed")
    return WebPaymentAuthorized(
        command_id=_text(item, "command_id", _ID),
        session_id=_text(item, "session_id", _ID),
        cost_limit=Money(minor, currency),
        expires_at=expires_at,
        brand=brand,
        last4=last4,
        **stamp,
    )


class CommandChannel:
    """Receives the gateway's commands, journals them and posts them to the daemon.

    `poll_once` is one poll (the scripted simulator and the tests call it with `wait_s=0`);
    `run` is the channel's thread: poll, and back off after a failure."""

    def __init__(
        self,
        journal: Journal,
        client: GatewayClient,
        clock: Clock,
        post: Callable[[Event], None],
        *,
        terminal_id: str,
        wait_s: int = WAIT_S,
        rng: random.Random | None = None,
        backoff_base_ms: int = BACKOFF_BASE_MS,
        backoff_cap_ms: int = BACKOFF_CAP_MS,
        offer: Offer | None = None,
    ) -> None:
        self.offer = offer  # None: no pay-by-phone code is shown
        self.pay_code: str | None = None
        self._code_due_ms = 0  # monotonic: when to ask for a new code
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.journal = journal
        self.terminal_id = terminal_id
        self.client = client
        self.clock = clock
        self.post = post
        self.wait_s = wait_s
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._stop = threading.Event()
        self.failures = 0

    def _stamp(self) -> dict[str, Any]:
        return {"at_ms": self.clock.monotonic_ms(), "at": self.clock.now()}

    def poll_once(self, wait_s: int | None = None) -> int:
        """One poll; how many new commands were posted. UplinkError if the gateway gave no
        well-formed answer."""
        wait = self.wait_s if wait_s is None else wait_s
        self.refresh_code()
        path = f"/v1/commands?terminal_id={quote(self.terminal_id)}&wait={wait}"
        if self.pay_code is not None:
            path += f"&pay_code={quote(self.pay_code)}"
        data = self.client.get_json(path, read_timeout_s=wait + 10)
        if data.get("pay_code") == "spent":
            self._code_due_ms = 0  # paid (or gone): a new code before the next poll
        items = data.get("commands")
        if not isinstance(items, list):
            raise UplinkError("malformed commands")
        return sum(self.receive(item) for item in items if isinstance(item, dict))

    def receive(self, item: dict[str, Any]) -> bool:
        """Journal one command and act on it; False if it was known, or not well-formed."""
        kind = item.get("kind")
        at = self.clock.now()
        try:
            if kind not in ("start", "stop"):
                raise CommandInvalid(f"unknown kind {kind!r}")
            command_id = _text(item, "command_id", _ID)
            session_id = _text(item, "session_id", _ID)
            event: Event
            if kind == "start":
                lifetime = item.get("expires_in_ms")
                if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 0:
                    raise CommandInvalid("expires_in_ms is not a duration")
                # The lifetime is counted on this kiosk's clock from receipt (journaled with
                # the command, so a restart keeps the same end): the gateway's clock may
                # differ from it.
                item = {**item, "expires_at": (at + timedelta(milliseconds=lifetime)).isoformat()}
                event = parse_start(item, self._stamp())
            else:
                event = StopRequested(session_id=session_id, **self._stamp())
        except CommandInvalid as exc:
            log.warning("event=command_invalid kind=%s error=%s", kind, exc)
            return False
        with self.journal.atomic():
            if not self.journal.receive_command(
                command_id=command_id, kind=str(kind), session_id=session_id, body=item, at=at
            ):
                return False
            if kind == "stop":
                queue_answer(
                    self.journal,
                    command_id=command_id,
                    session_id=session_id,
                    status="received",
                    reason="",
                    at=at,
                )
            elif self.journal.session_row(session_id) is not None:
                # A session id the kiosk has used already: never a second session on it.
                queue_answer(
                    self.journal,
                    command_id=command_id,
                    session_id=session_id,
                    status="not_started",
                    reason="duplicate",
                    at=at,
                )
                return False
        log.info("event=command kind=%s command=%s session=%s", kind, command_id, session_id)
        self.post(event)
        return True

    def refresh_code(self) -> None:
        """Ask the gateway for the code to show when none is shown, the shown one was spent,
        or it has less than REFRESH_MS left; post it to the machine when it changed. The
        machine stops showing a code when its time is up, so a gateway that does not answer
        never leaves an expired code on the screen. UplinkError if it did not answer."""
        if self.offer is None or self.clock.monotonic_ms() < self._code_due_ms:
            return
        body = {"terminal_id": self.terminal_id, **self.offer()}
        key = f"{self.terminal_id}:pay-code:{self.clock.monotonic_ms()}:{self.rng.getrandbits(32)}"
        try:
            data = self.client.post("/v1/pay-codes", key, body)
        except GatewayRefused as refusal:
            log.warning("event=pay_code_refused code=%s", refusal.code)
            self._code_due_ms = self.clock.monotonic_ms() + BACKOFF_CAP_MS
            return
        code, url, valid = data.get("code"), data.get("url"), data.get("expires_in_ms")
        if (
            not isinstance(code, str)
            or not _ID.match(code)
            or not isinstance(url, str)
            or not url.startswith(("https://", "http://"))
            or not isinstance(valid, int)
            or isinstance(valid, bool)
            or valid <= 0
        ):
            raise UplinkError("malformed pay code")
        now = self.clock.monotonic_ms()
        self._code_due_ms = now + (valid - REFRESH_MS if valid > 2 * REFRESH_MS else valid // 2)
        if code != self.pay_code:
            self.pay_code = code
            log.info("event=pay_code valid_ms=%d", valid)
        # Posted again when unchanged: the gateway's word on its lifetime re-arms the machine's
        # timer (on a simulated clock that runs fast, the code would otherwise leave the
        # screen while the gateway still honours it).
        self.post(PayCodeChanged(url=url, valid_ms=valid, **self._stamp()))

    def replay(self) -> int:
        """Post again the start commands journaled but never answered (a restart between
        the two). How many were posted."""
        posted = 0
        for item in self.journal.unanswered_commands():
            try:
                event = parse_start(item, self._stamp())
            except CommandInvalid:
                continue
            log.info("event=command_replayed command=%s", event.command_id)
            self.post(event)
            posted += 1
        return posted

    def backoff_ms(self) -> int:
        ceiling = min(self.backoff_cap_ms, self.backoff_base_ms * 2 ** min(self.failures, 20))
        return self.rng.randint(ceiling // 2, ceiling)  # "equal jitter"

    def run(self) -> None:
        """The channel's thread: poll until stopped; after a failure wait the back-off."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except UplinkError as exc:
                self.failures += 1
                delay = self.backoff_ms()
                log.info("event=commands_unreachable error=%s retry_ms=%d", exc, delay)
                self._stop.wait(delay / 1000)
                continue
            except Exception:
                # A broken journal or a bug: keep the channel alive, slowly.
                log.exception("event=commands_error")
                self.failures += 1
                self._stop.wait(self.backoff_ms() / 1000)
                continue
            self.failures = 0

    def stop(self) -> None:
        self._stop.set()
        self.client.close()
