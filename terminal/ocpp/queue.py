"""The OCPP client's durable queue: messages that must arrive, in the journal.

TransactionEvent and NotifySettlement requests are written in the same journal transaction as
the session record they describe (the executor's batch), so a crash cannot keep one without
the other. The client sends them strictly in `seq` order, one at a time (OCPP 2.1 E04/E12:
transaction messages in the order they happened, retried while the CSMS is unreachable). A
CALLERROR answer is retried `MAX_REJECTIONS` times and then set aside as failed, so one
message the CSMS refuses cannot hold the rest of the queue for ever (OCPP 2.1 E13.FR.04,
`MessageAttemptsTransactionEvent`).

Connector status changes are queued here too (with `OCPPCommCtrlr.QueueAllMessages`, see
`reporter`), in their own commit after the step that made them.

Per transaction the queue keeps the next `seqNo` (OCPP 2.1 E01.FR.xx: numbered from 0 in the
order of the events) and what has been reported (charging state, cost limit, ended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from terminal.shell.journal import Journal

PENDING = "pending"
DONE = "done"
FAILED = "failed"
MAX_REJECTIONS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedMessage:
    seq: int
    action: str  # "TransactionEvent", "NotifySettlement", "StatusNotification"
    transaction_id: str | None
    payload: dict[str, Any]  # the request as sent on the wire (camelCase)
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TxRecord:
    """What has been reported of one transaction."""

    transaction_id: str
    next_seq_no: int
    charging_state: str | None
    max_cost_minor: int | None
    ended: bool
    pending_end: dict[str, Any] | None  # an Ended event waiting for its signed end reading


class OcppQueue:
    """Queue and transaction bookkeeping on the journal's connection of the calling thread:
    the daemon thread writes (inside the executor's transaction), the client thread reads the
    head and marks it sent; the sender thread adds settlements."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    # -- the queue --------------------------------------------------------------------------
    def enqueue(
        self, action: str, payload: dict[str, Any], *, transaction_id: str | None, at: datetime
    ) -> int:
        cursor = self.journal.execute(
            "INSERT INTO ocpp_queue (action, transaction_id, payload, created_at) VALUES (?,?,?,?)",
            (action, transaction_id, json.dumps(payload, sort_keys=True), at.isoformat()),
        )
        return int(cursor.lastrowid or 0)

    def head(self, limit: int = 1) -> list[QueuedMessage]:
        rows = self.journal.execute(
            "SELECT * FROM ocpp_queue WHERE state=? ORDER BY seq LIMIT ?", (PENDING, limit)
        ).fetchall()
        return [
            QueuedMessage(
                seq=r["seq"],
                action=r["action"],
                transaction_id=r["transaction_id"],
                payload=json.loads(r["payload"]),
                attempts=r["attempts"],
            )
            for r in rows
        ]

    def sent(self, seq: int) -> None:
        self.journal.execute(
            "UPDATE ocpp_queue SET state=?, attempts=attempts+1 WHERE seq=? AND state=?",
            (DONE, seq, PENDING),
        )

    def rejected(self, seq: int, error: str) -> bool:
        """The CSMS answered with a CALLERROR: count it; after MAX_REJECTIONS the message is
        set aside (failed). True if it was set aside."""
        with self.journal.atomic():
            self.journal.execute(
                "UPDATE ocpp_queue SET attempts=attempts+1, last_error=? WHERE seq=? AND state=?",
                (error[:200], seq, PENDING),
            )
            row = self.journal.execute(
                "SELECT attempts FROM ocpp_queue WHERE seq=?", (seq,)
            ).fetchone()
            if row is not None and row[0] >= MAX_REJECTIONS:
                self.journal.execute("UPDATE ocpp_queue SET state=? WHERE seq=?", (FAILED, seq))
                return True
        return False

    def depth(self) -> int:
        row = self.journal.execute(
            "SELECT COUNT(*) FROM ocpp_queue WHERE state=?", (PENDING,)
        ).fetchone()
        return int(row[0])

    def messages(self) -> list[dict[str, Any]]:
        """Every row, oldest first (for the console and tests)."""
        rows = self.journal.execute("SELECT * FROM ocpp_queue ORDER BY seq").fetchall()
        return [dict(r) for r in rows]

    def reclaim(self) -> int:
        """Delete sent rows (their transactions keep their bookkeeping)."""
        return int(self.journal.execute("DELETE FROM ocpp_queue WHERE state=?", (DONE,)).rowcount)

    # -- transactions -----------------------------------------------------------------------
    def transaction(self, transaction_id: str) -> TxRecord | None:
        r = self.journal.execute(
            "SELECT * FROM ocpp_transactions WHERE transaction_id=?", (transaction_id,)
        ).fetchone()
        if r is None:
            return None
        return TxRecord(
            transaction_id=r["transaction_id"],
            next_seq_no=r["next_seq_no"],
            charging_state=r["charging_state"],
            max_cost_minor=r["max_cost_minor"],
            ended=bool(r["ended"]),
            pending_end=json.loads(r["pending_end"]) if r["pending_end"] else None,
        )

    def open_transactions(self) -> list[str]:
        rows = self.journal.execute(
            "SELECT transaction_id FROM ocpp_transactions WHERE ended=0"
        ).fetchall()
        return [r[0] for r in rows]

    def save_transaction(self, tx: TxRecord) -> None:
        self.journal.execute(
            """
            INSERT INTO ocpp_transactions (transaction_id, next_seq_no, charging_state,
                max_cost_minor, ended, pending_end)
            VALUES (?,?,?,?,?,?)
            ON CONFLICT(transaction_id) DO UPDATE SET next_seq_no=excluded.next_seq_no,
                charging_state=excluded.charging_state,
                max_cost_minor=excluded.max_cost_minor, ended=excluded.ended,
                pending_end=excluded.pending_end
            """,
            (
                tx.transaction_id,
                tx.next_seq_no,
                tx.charging_state,
                tx.max_cost_minor,
                int(tx.ended),
                json.dumps(tx.pending_end, sort_keys=True) if tx.pending_end else None,
            ),
        )

    # -- sessions the CSMS authorized (and bills) ---------------------------------------------
    def mark_csms_session(self, session_id: str) -> None:
        self.journal.execute(
            "INSERT OR IGNORE INTO ocpp_csms_sessions (session_id) VALUES (?)", (session_id,)
        )

    def is_csms_session(self, session_id: str) -> bool:
        row = self.journal.execute(
            "SELECT 1 FROM ocpp_csms_sessions WHERE session_id=?", (session_id,)
        ).fetchone()
        return row is not None

    # -- the CSMS's local authorization list (D01-D02) --------------------------------------
    def local_list_version(self) -> int:
        value = self.variables().get(("LocalAuthListCtrlr", "_Version"))
        return int(value) if value is not None else 0

    def update_local_list(self, version: int, full: bool, entries: dict[str, str | None]) -> None:
        """Replace (full) or change (differential) the list: token -> status, None removes."""
        with self.journal.atomic():
            if full:
                self.journal.execute("DELETE FROM ocpp_local_list")
            for token, status in entries.items():
                if status is None:
                    self.journal.execute("DELETE FROM ocpp_local_list WHERE id_token=?", (token,))
                else:
                    self.journal.execute(
                        "INSERT INTO ocpp_local_list (id_token, status) VALUES (?,?)"
                        " ON CONFLICT(id_token) DO UPDATE SET status=excluded.status",
                        (token, status),
                    )
            self.set_variable("LocalAuthListCtrlr", "_Version", str(version))

    def local_status(self, token: str) -> str | None:
        row = self.journal.execute(
            "SELECT status FROM ocpp_local_list WHERE id_token=?", (token,)
        ).fetchone()
        return str(row[0]) if row is not None else None

    # -- remote starts (RequestStartTransaction) ---------------------------------------------
    def note_remote_start(self, session_id: str, remote_start_id: int, token_type: str) -> None:
        value = json.dumps({"id": remote_start_id, "type": token_type})
        self.set_variable("_remote_start", session_id, value)

    def remote_start(self, session_id: str) -> tuple[int, str] | None:
        """(remoteStartId, idToken type) of a session the CSMS started, else None."""
        row = self.journal.execute(
            "SELECT value FROM ocpp_variables WHERE component='_remote_start' AND variable=?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        info = json.loads(row[0])
        return int(info["id"]), str(info["type"])

    # -- a web payment the CSMS runs (C25) ---------------------------------------------------
    def note_web_payment(self, evse_id: int, at: datetime, until: datetime) -> None:
        """NotifyWebPaymentStarted, journaled before the machine hears of it: a restart within
        the timeout keeps the charger for the payment for the rest of it."""
        value = json.dumps({"at": at.isoformat(), "until": until.isoformat()})
        self.set_variable("_web_payment", str(evse_id), value)

    def web_payment_until(self, evse_id: int) -> datetime | None:
        """Until when the last web payment the CSMS announced for `evse_id` keeps it."""
        row = self.journal.execute(
            "SELECT value FROM ocpp_variables WHERE component='_web_payment' AND variable=?",
            (str(evse_id),),
        ).fetchone()
        return None if row is None else datetime.fromisoformat(json.loads(row[0])["until"])

    def web_payment_used(self, evse_id: int) -> None:
        """The CSMS started the payment's session: nothing to keep after a restart."""
        with self.journal.atomic():
            self.journal.execute(
                "DELETE FROM ocpp_variables WHERE component='_web_payment' AND variable=?",
                (str(evse_id),),
            )

    # -- a restart the CSMS asked for (Reset) ------------------------------------------------
    def note_reset(self) -> None:
        self.set_variable("_kiosk", "reset_requested", "1")

    def take_reset(self) -> bool:
        """Whether the last restart was a CSMS's Reset (and forget it)."""
        with self.journal.atomic():
            row = self.journal.execute(
                "SELECT value FROM ocpp_variables WHERE component='_kiosk'"
                " AND variable='reset_requested'"
            ).fetchone()
            self.journal.execute(
                "DELETE FROM ocpp_variables WHERE component='_kiosk' AND variable='reset_requested'"
            )
        return row is not None

    # -- variables set by the CSMS -----------------------------------------------------------
    def variables(self) -> dict[tuple[str, str], str]:
        rows = self.journal.execute("SELECT component, variable, value FROM ocpp_variables")
        return {(r[0], r[1]): r[2] for r in rows}

    def set_variable(self, component: str, variable: str, value: str) -> None:
        with self.journal.atomic():
            self.journal.execute(
                "INSERT INTO ocpp_variables (component, variable, value) VALUES (?,?,?)"
                " ON CONFLICT(component, variable) DO UPDATE SET value=excluded.value",
                (component, variable, value),
            )
