"""The sender: drains the outbox to the gateway (`gateway_client.py`) and posts the answers
to the machine as events.

Every request carries the idempotency key fixed when its outbox row was written, so a retry
after a lost response is never done twice. A refused capture, void or command answer is the
operator's (an alert), except a "not started" refused because the gateway had taken that
start's "started" (a normal race, logged at info); an authorization with no well-formed
answer is "no answer", never "approved". Beside the outbox it fetches the terminal config
(lists, tariff), reconciles the gateway's open holds once per start, and sends the kiosk's
status as a heartbeat.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from hardware.clock import Clock
from terminal.core.bill_wire import bill_from_wire, bill_to_wire
from terminal.core.billing import limit_to
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    Event,
    FaultCleared,
    IncrementAnswered,
    TariffChanged,
)
from terminal.errors import GatewayRefused, JournalFull, UplinkError
from terminal.money import Money
from terminal.shell.gateway_client import AuthAnswer, GatewayClient, parse_authorization
from terminal.shell.journal import DONE, FAILED, Journal, OutboxRow
from terminal.shell.journal_damage import JOURNAL_DAMAGED, reconcile
from terminal.shell.local_lists import ListsError, LocalLists
from terminal.shell.tariffs import TariffBook

log = logging.getLogger("ev_terminal.uplink")

BACKOFF_BASE_MS = 1_000
BACKOFF_CAP_MS = 5 * 60_000
EVENT_BATCH = 100
# How often the kiosk reports its status (a heartbeat): well inside the fleet page's
# 10 minutes "online" window, and about 1,440 stored idempotency keys a terminal in the
# gateway's 48 hours of keeping them.
STATUS_EVERY_MS = 2 * 60_000
# Lanes sent in batches: lane -> (path, the body's list field, each row's item).
BATCHED = {
    "events": ("/v1/events", "events", "event"),
    "readings": ("/v1/meter-readings", "readings", "reading"),
}
# The gateway's refusal of an answer to a command it holds in another state: 409
# `command_<state>` (gateway/commands.py, `Commands.answer`).
STARTED_ALREADY = (409, "command_started")


PointHook = Callable[[str, OutboxRow], None]
"""Told when a money request reaches a point of its round trip: "committed" (its row is
journaled, the request not sent yet) and "answered" (the gateway's answer is in, not yet
journaled). Crash tests stop the process there (`launcher/sim_kiosk.py --pause-at`)."""

SettlementHook = Callable[[OutboxRow, str, dict[str, Any]], None]
"""Told of a capture's or void's outcome, inside the journal transaction that records it:
(the row, "done" | "refused" | "no_answer", the gateway's answer or the error)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    sent: int
    failed: int


class Sender:
    """Drains the outbox: the head of each lane in order, with exponential backoff and jitter.

    `drain_once` sends what is due and returns; the real daemon runs it in its own thread
    (`run`), the scripted simulator calls it directly so runs are deterministic."""

    def __init__(
        self,
        journal: Journal,
        client: GatewayClient,
        clock: Clock,
        post: Callable[[Event], None],
        *,
        rng: random.Random | None = None,
        lists: LocalLists | None = None,
        sync_every_ms: int = 15 * 60_000,
        terminal_id: str = "",
        tariffs: TariffBook | None = None,
        status_every_ms: int = STATUS_EVERY_MS,
    ) -> None:
        self.terminal_id = terminal_id
        self.tariffs = tariffs  # the tariff in the terminal config (`tariffs.py`)
        self.journal = journal
        self.client = client
        self.clock = clock
        self.post = post
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._due_now = threading.Event()
        self.reachable: bool | None = None
        self.lists = lists
        self.sync_every_ms = sync_every_ms
        self._next_sync_ms: int | None = None
        self.on_settlement: SettlementHook | None = None  # OCPP NotifySettlement
        self.on_point: PointHook | None = None  # crash tests aim their kills with it
        # Once per start: the gateway's open holds against the journal (journal_damage.py).
        self.reconciled = False
        self._reconcile_attempts = 0
        self._next_reconcile_ms = 0
        # The kiosk's status for the gateway's fleet page (`Daemon.wire_status`), sent every
        # `status_every_ms` as a heartbeat; None: nothing to report (tests, benches).
        self.status_source: Callable[[], dict[str, Any]] | None = None
        self.status_every_ms = status_every_ms
        self._next_status_ms: int | None = None
        # Run after each round's outbox rows: a receipt's link code (`link_codes.py`).
        self.after_round: Callable[[], object] | None = None

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _answer(self, sid: str, answer: AuthAnswer) -> None:
        self.post(
            AuthorizationAnswered(
                at_ms=self.clock.monotonic_ms(),
                at=self.clock.now(),
                session_id=sid,
                outcome=answer.outcome,
                amount=answer.amount,
                reason=answer.reason,
            )
        )

    def _increment_answer(self, sid: str, answer: AuthAnswer) -> None:
        self.post(
            IncrementAnswered(
                at_ms=self.clock.monotonic_ms(),
                at=self.clock.now(),
                session_id=sid,
                outcome=answer.outcome,
                amount=answer.amount,
                reason=answer.reason,
            )
        )

    def _give_up_increment(self, row: OutboxRow, error: str) -> bool:
        """An increment is tried once: without an answer the session stops at its cap, and a
        late top-up would only hold more of the driver's money until the capture releases it
        (the capture waits behind it in the lane)."""
        self.journal.finish(row.seq, FAILED, {"error": error})
        self._increment_answer(row.lane, AuthAnswer(outcome=AuthOutcome.NO_ANSWER, reason=error))
        return False

    def sync_now(self) -> None:
        """Send everything queued now, back-off or not (done on the sender's own thread)."""
        self._due_now.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def sync_lists(self) -> None:
        """Fetch the terminal config when due: the local authorization and deny lists
        (`LocalLists`) and the station's tariff (`TariffBook`, posted to the machine as
        `TariffChanged` once journaled). A failure keeps what the kiosk has and tries again at
        the next interval. With a list file the lists are the file's; the tariff is still
        fetched."""
        now = self.clock.monotonic_ms()
        if self.lists is None or (self.lists.list_file is not None and self.tariffs is None):
            return
        if self._next_sync_ms is not None and now < self._next_sync_ms:
            return
        self._next_sync_ms = now + self.sync_every_ms
        try:
            # The gateway knows a terminal by its certificate; without one (the development
            # mode) the query names it, so it is served its station's tariff.
            path = "/v1/terminal-config"
            if self.terminal_id:
                path += f"?terminal_id={quote(self.terminal_id, safe='')}"
            data, etag = self.client.get_if_changed(path, self.lists.etag)
            if data is not None:
                # The tariff is journaled before the lists' copy keeps the new ETag: a crash
                # in between fetches the document again.
                self._take_tariff(data)
                self.lists.apply(data, etag, self.clock.now())
        except (UplinkError, ListsError) as exc:
            log.info("event=lists_sync_failed error=%s", exc)

    def _take_tariff(self, data: Any) -> None:
        if self.tariffs is None or not isinstance(data, dict):
            return  # not a document: `LocalLists.apply` says why
        changed = self.tariffs.receive(data.get("tariff"), self.clock.now())
        if changed is not None:
            key, tariff = changed
            self.post(
                TariffChanged(
                    tariff=tariff, key=key, at_ms=self.clock.monotonic_ms(), at=self.clock.now()
                )
            )

    def reconcile_once(self) -> bool:
        """Ask the gateway for this terminal's open holds and settle the ones the journal
        does not know (`journal_damage.reconcile`), once per start; retried with back-off
        while the gateway does not answer. Then the fault `journal_damaged` (if the journal
        was set aside at start) clears. Whether it is done."""
        if self.reconciled or not self.terminal_id:
            return True  # done, or a sender that speaks for no terminal (a bench's)
        now = self.clock.monotonic_ms()
        if now < self._next_reconcile_ms:
            return False
        path = f"/v1/terminals/{quote(self.terminal_id, safe='')}/open-authorizations"
        try:
            data, _ = self.client.get_if_changed(path, None)
            if data is None:
                raise UplinkError("no body")
            done = reconcile(self.journal, data, terminal_id=self.terminal_id, at=self.clock.now())
        except (UplinkError, ValueError) as exc:
            self._next_reconcile_ms = now + self._backoff_ms(self._reconcile_attempts)
            self._reconcile_attempts += 1
            log.warning("event=reconcile_failed error=%s", exc)
            return False
        self.reconciled = True
        log.info("event=reconciled released=%d behind=%s", len(done.released), done.behind)
        self.post(
            FaultCleared(
                fault=JOURNAL_DAMAGED, at_ms=self.clock.monotonic_ms(), at=self.clock.now()
            )
        )
        return True

    def report_status(self) -> bool:
        """Send the kiosk's status when one is due: `POST /v1/events` with no events and the
        status, under a key of its own (never retried: the next one is fresher). Whether one
        was delivered."""
        if self.status_source is None or not self.terminal_id:
            return False
        now = self.now_ms()
        if self._next_status_ms is not None and now < self._next_status_ms:
            return False
        self._next_status_ms = now + self.status_every_ms
        body = {"terminal_id": self.terminal_id, "events": [], "status": self.status_source()}
        try:
            self.client.post("/v1/events", f"status-{uuid.uuid4().hex}", body)
        except UplinkError as exc:
            self.reachable = False
            log.info("event=status_unsent error=%s", exc)
            return False
        except GatewayRefused as refusal:
            log.warning("event=status_refused code=%s", refusal.code)
            return False
        self.reachable = True
        return True

    def drain_once(self) -> SendResult:
        self.sync_lists()
        self.reconcile_once()
        self.report_status()
        sent = failed = 0
        for row in self.journal.due(self.now_ms()):
            if not self.journal.still_pending(row.seq):
                continue  # superseded while we were sending another row
            ok = self._send_batch(row.lane) if row.lane in BATCHED else self._send(row)
            sent += ok
            failed += not ok
        if self.after_round is not None:
            self.after_round()
        return SendResult(sent=sent, failed=failed)

    def drain_safely(self) -> SendResult:
        """`drain_once` that survives anything (a broken journal, a bug): the rows stay
        queued for the next round."""
        try:
            if self._due_now.is_set():
                self._due_now.clear()
                self.journal.make_all_due()
            return self.drain_once()
        except JournalFull as exc:
            # The disk is full: give the reserve back (the daemon sees it gone and takes the
            # kiosk out of service); what was not recorded is sent again with the same key.
            self.journal.rollback()
            self.journal.reserve.release()
            log.error("event=sender_journal_full error=%s", exc)
            return SendResult(sent=0, failed=1)
        except Exception:
            log.exception("event=sender_error")
            return SendResult(sent=0, failed=1)

    def _backoff_ms(self, attempts: int) -> int:
        ceiling = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** min(attempts, 20))
        return self.rng.randint(ceiling // 2, ceiling)  # "equal jitter"

    def _alert(self, kind: str, detail: str) -> None:
        """An event for the operator (through the gateway) and the log."""
        log.error("event=%s detail=%s", kind, detail)
        self.journal.enqueue_event(
            terminal_id=self.terminal_id, kind=kind, detail=detail, at=self.clock.now()
        )

    def _fit_capture(self, row: OutboxRow) -> OutboxRow:
        """A session started offline (store-and-forward) may have been priced above what
        the gateway approved when it finally answered: capture what was approved, never more
        (the gateway would refuse the whole capture and the hold would stay), and raise
        `capture_short` with the difference. Written before the capture is sent."""
        short = self.journal.shortfall(row.lane, row.seq)
        if short is None:
            return row
        asked, approved = short
        receipt = _limited_receipt(row.body.get("receipt"), approved)
        with self.journal.atomic():
            self.journal.shrink_capture(row.lane, row.seq, approved, receipt)
            self._alert("capture_short", f"{row.lane} priced={asked} approved={approved}")
        body = {**row.body, "amount": {**row.body["amount"], "minor": approved}}
        if receipt is not None:
            body["receipt"] = receipt
        return replace(row, body=body)

    def _send(self, row: OutboxRow) -> bool:
        if row.kind == "capture":
            row = self._fit_capture(row)
        if self.on_point is not None:
            self.on_point("committed", row)
        try:
            data = self.client.post(row.path, row.idem_key, row.body)
            if self.on_point is not None:
                self.on_point("answered", row)
        except UplinkError as exc:
            self.reachable = False
            if row.kind == "increment":
                log.info("event=send_failed kind=increment lane=%s error=%s", row.lane, exc)
                return self._give_up_increment(row, str(exc))
            with self.journal.atomic():
                self.journal.retry_later(
                    row.seq, self.now_ms() + self._backoff_ms(row.attempts), str(exc)
                )
                if row.kind == "capture" and row.attempts == 0 and self.on_settlement:
                    self.on_settlement(row, "no_answer", {"error": str(exc)})
            log.info("event=send_failed kind=%s lane=%s error=%s", row.kind, row.lane, exc)
            if row.kind == "authorize" and row.attempts == 0:
                self._answer(row.lane, AuthAnswer(outcome=AuthOutcome.NO_ANSWER, reason=str(exc)))
            return False
        except GatewayRefused as refusal:
            self.reachable = True
            race = _started_already(row, refusal)
            with self.journal.atomic():
                refused = {"status": refusal.status, "code": refusal.code}
                self.journal.finish(row.seq, FAILED, refused)
                if row.kind in ("capture", "void") and self.on_settlement:
                    self.on_settlement(row, "refused", refused)
                if row.kind in ("capture", "void", "command_answer") and not race:
                    # Money the kiosk meant to move and the gateway would not: the operator's.
                    self._alert(f"{row.kind}_refused", f"{row.lane} code={refusal.code}")
            if race:
                log.info(
                    "event=not_started_refused_as_started lane=%s command=%s code=%s",
                    row.lane,
                    row.idem_key.partition(":")[0],
                    refusal.code,
                )
            else:
                log.warning(
                    "event=refused kind=%s lane=%s status=%s code=%s",
                    row.kind,
                    row.lane,
                    refusal.status,
                    refusal.code,
                )
            if row.kind == "authorize":
                self._answer(
                    row.lane, AuthAnswer(outcome=AuthOutcome.DECLINED, reason=refusal.code)
                )
            if row.kind == "increment":
                self._increment_answer(
                    row.lane, AuthAnswer(outcome=AuthOutcome.DECLINED, reason=refusal.code)
                )
            if row.kind == "command_answer" and row.body.get("status") == "started":
                # The gateway would not take "started" (it released the hold): never start.
                self._answer(
                    row.lane, AuthAnswer(outcome=AuthOutcome.DECLINED, reason=refusal.code)
                )
            return True
        self.reachable = True
        if row.kind == "authorize":
            event = parse_authorization(data, row.lane, row.body["amount"]["currency"])
            if event is None:
                # Malformed: never an approval. Keep the row for a retry with the same key.
                self.journal.retry_later(
                    row.seq, self.now_ms() + self._backoff_ms(row.attempts), "malformed answer"
                )
                if row.attempts == 0:
                    self._answer(
                        row.lane, AuthAnswer(outcome=AuthOutcome.NO_ANSWER, reason="malformed")
                    )
                return False
            self.journal.finish(row.seq, DONE, data)
            self._answer(row.lane, event)
            return True
        if row.kind == "increment":
            answer = parse_authorization(data, row.lane, row.body["amount"]["currency"])
            if answer is None:
                return self._give_up_increment(row, "malformed answer")
            self.journal.finish(row.seq, DONE, data)
            self._increment_answer(row.lane, answer)
            return True
        if row.kind == "command_answer":
            if data.get("authorization_id") != row.lane or data.get("status") != "answered":
                self.journal.retry_later(
                    row.seq, self.now_ms() + self._backoff_ms(row.attempts), "malformed answer"
                )
                return False
            self.journal.finish(row.seq, DONE, data)
            if row.body.get("status") == "started":
                # The gateway took "started" while the hold is in force: the session may go
                # on (its cost limit is the hold it was commanded with).
                self._answer(row.lane, AuthAnswer(outcome=AuthOutcome.APPROVED))
            return True
        expected = {"capture": "captured", "void": "voided"}.get(row.kind)
        if data.get("authorization_id") != row.lane or data.get("status") != expected:
            self.journal.retry_later(
                row.seq, self.now_ms() + self._backoff_ms(row.attempts), "malformed answer"
            )
            return False
        with self.journal.atomic():  # one commit: a crash cannot split the two
            self.journal.finish(row.seq, DONE, data)
            self.journal.mark_acknowledged(row.lane)
            if self.on_settlement is not None:
                self.on_settlement(row, "done", data)
        log.info("event=settled kind=%s session=%s", row.kind, row.lane)
        return True

    def _send_batch(self, lane: str) -> bool:
        """Send up to EVENT_BATCH rows of a batched lane in one request; the key is the first
        row's plus the count, so a retry of the same rows is the same request, and each item
        carries its own key (events) or is its own identity (signed readings), so a retry
        with more rows stores nothing twice."""
        path, field, item = BATCHED[lane]
        rows = self.journal.pending_events(EVENT_BATCH, lane)
        if not rows:
            return True
        body = {
            "terminal_id": rows[0].body["terminal_id"],
            field: [r.body[item] for r in rows],
        }
        try:
            self.client.post(path, rows[0].idem_key + f"+{len(rows)}", body)
        except UplinkError as exc:
            self.reachable = False
            for r in rows:
                self.journal.retry_later(
                    r.seq, self.now_ms() + self._backoff_ms(r.attempts), str(exc)
                )
            return False
        except GatewayRefused as refusal:
            for r in rows:
                self.journal.finish(r.seq, FAILED, {"code": refusal.code})
            return True
        with self.journal.atomic():
            for r in rows:
                self.journal.finish(r.seq, DONE, None)
        return True

    # -- the thread --------------------------------------------------------------------------
    def run(self) -> None:
        """Sender thread: drain, then sleep until woken or the next row is due."""
        while not self._stop.is_set():
            self.drain_safely()
            next_due = self.journal.next_due_ms()
            wait_s = 5.0 if next_due is None else max(0.0, (next_due - self.now_ms()) / 1000)
            self._wake.wait(timeout=min(wait_s, 5.0))
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def _started_already(row: OutboxRow, refusal: GatewayRefused) -> bool:
    """Whether this refusal is of a "not started" whose "started" the gateway had taken: the
    kiosk gave a phone-paid start up (authorization timeout, restart) while the gateway was
    away, and only the gateway's answer to "started" was lost (`Journal.enqueue` turned the
    answer into "not started" with the void). The session had no energy and its void, queued
    behind in the lane, releases the hold: nothing for an operator."""
    return (
        row.kind == "command_answer"
        and row.body.get("status") == "not_started"
        and (refusal.status, refusal.code) == STARTED_ALREADY
    )


def _limited_receipt(receipt: Any, minor: int) -> dict[str, Any] | None:
    """`receipt` cut down to `minor` with a LIMIT line per VAT rate (`billing.limit_to`), so
    it totals the shrunk capture as every receipt must; None when there is no receipt or its
    lines carry no `incl_vat` (journaled by a kiosk of the wire's first form: sent as it is,
    and the gateway refuses it as `receipt_mismatch`, an event like any refused capture)."""
    if not isinstance(receipt, dict):
        return None
    currency = receipt["currency"]
    bill = bill_from_wire(receipt, currency)
    if bill is None:
        return None
    return {**receipt, **bill_to_wire(limit_to(bill, Money(minor, currency)))}
