"""The journal: the terminal's SQLite database of sessions and the outbox to the gateway.

WAL with `synchronous=FULL`: a row is on disk when `commit` returns, and the executor commits a
record before it acts on it. Schema changes are numbered migrations (`PRAGMA user_version`).
Card data never enters it: a session stores the card token, brand and last four digits only;
the outbox stores the protected (encrypted) authorization payload, and only until the gateway
has answered that authorization (or a void superseded it): then the payload is cut from the
row, with `secure_delete` on (SQLite zeroes what it frees) and the WAL checkpointed and
truncated, so no page of the database, its `-wal` or `-shm` keeps the blob.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from terminal.core.session import Card, CardKind, Session, Status
from terminal.errors import JournalError, JournalFull
from terminal.money import Money
from terminal.shell.reserve import Reserve

log = logging.getLogger("ev_terminal.journal")
_T = TypeVar("_T")

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and the outbox
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        card_kind TEXT NOT NULL,
        card_token TEXT NOT NULL,
        card_brand TEXT NOT NULL,
        card_last4 TEXT NOT NULL,
        card_expiry TEXT,
        currency TEXT NOT NULL,
        hold_minor INTEGER NOT NULL,
        authorized_minor INTEGER,
        start_register_wh INTEGER,
        energy_wh INTEGER NOT NULL DEFAULT 0,
        amount_minor INTEGER,
        started_at TEXT NOT NULL,
        charging_started_at TEXT,
        last_sample_at TEXT,
        ended_at TEXT,
        end_reason TEXT,
        acknowledged INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        lane TEXT NOT NULL,
        kind TEXT NOT NULL,
        idem_key TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        answer TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX outbox_pending ON outbox(state, lane, seq);
    """,
    # 2: the OCPP client's own queue and transaction bookkeeping (terminal/ocpp/queue.py)
    """
    CREATE TABLE ocpp_queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL,
        transaction_id TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX ocpp_queue_pending ON ocpp_queue(state, seq);
    CREATE TABLE ocpp_transactions (
        transaction_id TEXT PRIMARY KEY,
        next_seq_no INTEGER NOT NULL DEFAULT 0,
        charging_state TEXT,
        max_cost_minor INTEGER,
        ended INTEGER NOT NULL DEFAULT 0,
        pending_end TEXT
    );
    CREATE TABLE ocpp_local_list (
        id_token TEXT PRIMARY KEY,
        status TEXT NOT NULL
    );
    CREATE TABLE ocpp_csms_sessions (
        session_id TEXT PRIMARY KEY
    );
    CREATE TABLE ocpp_variables (
        component TEXT NOT NULL,
        variable TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (component, variable)
    );
    """,
    # 3: the gateway's commands (terminal/shell/commands.py), journaled before they are acted
    # on; `answered` once the machine's answer is queued (or, for a stop, on receipt).
    """
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at TEXT NOT NULL,
        answered INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 4: the journal's identity (one row): made once, when the journal is created (or first
    # opened by this version), and bound to the terminal that writes it (`Journal.identity`).
    """
    CREATE TABLE journal_identity (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        journal_id TEXT NOT NULL,
        terminal_id TEXT,
        created_at TEXT NOT NULL
    );
    INSERT INTO journal_identity (one, journal_id, created_at)
        VALUES (1, lower(hex(randomblob(16))), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
    """,
    # 5: tariffs received from the gateway (terminal/shell/tariffs.py), the one new sessions
    # are priced by (`tariff_current`, one row; NULL key: the config file's), and the one each
    # session started with.
    """
    CREATE TABLE tariffs (
        tariff_key TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE TABLE tariff_current (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        tariff_key TEXT REFERENCES tariffs(tariff_key),
        changed_at TEXT NOT NULL
    );
    ALTER TABLE sessions ADD COLUMN tariff_key TEXT;
    ALTER TABLE sessions ADD COLUMN tariff_name TEXT;
    """,
)

PENDING = "pending"
DONE = "done"
FAILED = "failed"  # a definite refusal: kept for the operator, never retried
SUPERSEDED = "superseded"  # an authorization overtaken by its void

# Bounds. Captures, voids and authorizations are never dropped. Events (status, faults) are
# kept for the newest EVENTS_WINDOW outbox rows: during a long partition older unsent events
# are dropped (and counted in the log) so the queue cannot fill the disk by itself.
EVENTS_WINDOW = 100_000
JOURNAL_FULL = "journal_full"  # the fault while the journal has no room for new sessions
# The WAL is checkpointed every WAL_AUTOCHECKPOINT pages and truncated back to WAL_SIZE_LIMIT
# bytes after a checkpoint, so its growth stays well inside the reserve (`reserve.py`).
WAL_AUTOCHECKPOINT = 256
WAL_SIZE_LIMIT = 1 << 20

# Free pages kept for settling: below this the daemon refuses new sessions (fault
# "journal_full") while the running session's records, captures and voids still fit.
RESERVE_PAGES = 256


class _Connection(sqlite3.Connection):
    """A connection that reports a full disk as `JournalFull` (SQLITE_FULL, also raised when
    the database reaches `PRAGMA max_page_count`)."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise JournalFull(str(exc)) from exc
            raise


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalIdentity:
    """Which journal this is: a random id made with it, the terminal it belongs to, when it
    was made, and whether it was made by this open (a new, empty journal)."""

    journal_id: str
    terminal_id: str
    created_at: str
    new: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    seq: int
    lane: str  # the session id, or "events"
    kind: str  # authorize | increment | capture | void | events
    idem_key: str
    path: str
    body: dict[str, Any]
    attempts: int
    next_attempt_ms: int
    created_at: str


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Journal:
    """One connection per thread (sqlite3 objects stay in the thread that made them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._max_pages: int | None = None
        self.new = False  # set by the first migration: this open made the journal
        self.reserve = Reserve(path.parent)
        if self.reserve.present() and self.reserve.free_bytes() < self.reserve.margin:
            # A disk that filled while the kiosk was off: open and recover from the reserve
            # (the daemon starts out of service until there is room for it again).
            self.reserve.release()
        self.spend_reserve(self._migrate)
        self.reserve.ensure()

    def spend_reserve(self, write: Callable[[], _T]) -> _T:
        """Run a write; if the disk is full, give the reserve back to the file system and run
        it once more (JournalFull if that fails too, or there was no reserve to give)."""
        try:
            return write()
        except JournalFull:
            self.rollback()
            conn = self._conn()
            if conn.in_transaction:  # a script's own BEGIN (migrations)
                conn.execute("ROLLBACK")
            if not self.reserve.release():
                raise
        return write()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, factory=_Connection
            )
            conn.row_factory = sqlite3.Row
            if self._max_pages is not None:
                conn.execute(f"PRAGMA max_page_count={int(self._max_pages)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")  # freed cells and pages are zeroed
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One statement on this thread's connection, inside its open transaction if any: for
        a module that keeps its own tables in the journal (the OCPP queue)."""
        return self._conn().execute(sql, params)

    def begin(self) -> None:
        """Open a transaction, or join the one open on this thread."""
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            self._conn().execute("BEGIN IMMEDIATE")
        self._local.depth = depth + 1

    def commit(self) -> None:
        """Leave the transaction; the outermost commit writes it (one fsync)."""
        self._local.depth -= 1
        if self._local.depth == 0:
            self._conn().execute("COMMIT")
            self._checkpoint_if_scrubbed()

    # -- card data at rest --------------------------------------------------------------------
    def _scrubbed(self) -> None:
        """A payload was cut: checkpoint once the change is committed."""
        self._local.scrubbed = True
        if getattr(self._local, "depth", 0) == 0:
            self._checkpoint_if_scrubbed()

    def _checkpoint_if_scrubbed(self) -> None:
        if getattr(self._local, "scrubbed", False):
            self._local.scrubbed = False
            self.checkpoint()

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes
        (`wal_checkpoint(TRUNCATE)`), so no old page image stays in the `-wal` file; False if a
        reader kept it from finishing (the next scrub tries again)."""
        try:
            busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except JournalFull:
            busy = 1  # the database file could not grow: the WAL keeps the pages for now
        if busy:
            log.warning("event=checkpoint_unfinished")
            self._local.scrubbed = True  # tried again after the next commit
        return not busy

    def forget_card_data(self) -> int:
        """Cut the payload from every authorization the gateway answered or a void
        superseded (at start-up: rows written before this rule, or a crash between the answer
        and the scrub), then checkpoint. Returns how many rows were cut."""
        with self.atomic():
            cursor = self._conn().execute(
                "UPDATE outbox SET body = json_remove(body, '$.card.payload')"
                " WHERE kind = 'authorize' AND state != ?"
                " AND json_extract(body, '$.card.payload') IS NOT NULL",
                (PENDING,),
            )
            if cursor.rowcount:
                self._local.scrubbed = True
        self._checkpoint_if_scrubbed()
        return int(cursor.rowcount)

    def rollback(self) -> None:
        """Abandon the whole transaction, however deeply joined."""
        if getattr(self._local, "depth", 0):
            self._local.depth = 0
            conn = self._conn()
            if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                conn.execute("ROLLBACK")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around everything inside; nests (only the outermost commits)."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise JournalError(f"journal schema {version} is newer than this version knows")
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise JournalError("not a journal: a database with other tables")
            self.new = True
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def check(self) -> None:
        """`PRAGMA integrity_check`; raises JournalError if the database is damaged."""
        rows = self._conn().execute("PRAGMA integrity_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise JournalError(f"integrity check failed: {rows[0][0]}")

    def identity(self, terminal_id: str) -> JournalIdentity:
        """This journal's identity, bound to `terminal_id` the first time it is asked for;
        JournalError if the journal belongs to another terminal (a wrong file)."""
        conn = self._conn()
        select = "SELECT journal_id, terminal_id, created_at FROM journal_identity"
        row = conn.execute(select).fetchone()
        if row is not None and row["terminal_id"] is None:
            with self.atomic():  # written once: a start on a bound journal writes nothing
                conn.execute(
                    "UPDATE journal_identity SET terminal_id=? WHERE terminal_id IS NULL",
                    (terminal_id,),
                )
                row = conn.execute(select).fetchone()
        if row is None:
            raise JournalError("the journal has no identity row")
        if row["terminal_id"] != terminal_id:
            raise JournalError(f"the journal of terminal {row['terminal_id']}, not {terminal_id}")
        return JournalIdentity(
            journal_id=row["journal_id"],
            terminal_id=terminal_id,
            created_at=row["created_at"],
            new=self.new,
        )

    def knows(self, authorization_id: str) -> bool:
        """Whether the journal has this authorization (a session, an outbox lane, or the hold
        of a command from the gateway): every authorization the terminal sent was journaled
        before it was sent, so an intact journal knows them all."""
        conn = self._conn()
        return (
            conn.execute(
                "SELECT 1 FROM sessions WHERE session_id=?"
                " UNION ALL SELECT 1 FROM outbox WHERE lane=?"
                " UNION ALL SELECT 1 FROM commands WHERE session_id=? LIMIT 1",
                (authorization_id, authorization_id, authorization_id),
            ).fetchone()
            is not None
        )

    # -- room -------------------------------------------------------------------------------
    def cap_pages(self, pages: int) -> None:
        """Cap the database at `pages` pages (`PRAGMA max_page_count`) on every connection:
        a size limit for the journal, and a full disk without filling one in tests."""
        self._max_pages = pages
        self._conn().execute(f"PRAGMA max_page_count={int(pages)}")

    def free_pages(self) -> int:
        """Pages the journal can still use: free pages inside the file, plus what the size
        cap and the disk leave for it to grow."""
        conn = self._conn()
        page_size, count, free, cap = (
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count", "max_page_count")
        )
        disk = shutil.disk_usage(self.path.parent).free // page_size
        return int(free + max(0, min(cap - count, disk)))

    def reclaim(self) -> int:
        """Make room: delete outbox rows that are finished (sent, refused or superseded);
        their sessions keep the record. Returns how many rows went."""
        with self.atomic():
            cursor = self._conn().execute(
                "DELETE FROM outbox WHERE state IN (?,?,?)", (DONE, FAILED, SUPERSEDED)
            )
        return int(cursor.rowcount)

    def orphan_holds(self) -> list[str]:
        """Sessions (lanes) that asked for a hold and will never settle it: an authorization
        in the outbox with no capture or void after it, whose session row is missing or was
        abandoned. Recovery voids them."""
        rows = self._conn().execute(
            """
            SELECT o.lane FROM outbox o
            WHERE o.kind = 'authorize' AND o.state IN (?, ?)
              AND NOT EXISTS (SELECT 1 FROM outbox x
                              WHERE x.lane = o.lane AND x.kind IN ('capture', 'void'))
              AND NOT EXISTS (SELECT 1 FROM sessions s
                              WHERE s.session_id = o.lane AND s.status != 'voiding')
            GROUP BY o.lane ORDER BY MIN(o.seq)
            """,
            (PENDING, DONE),
        )
        return [r[0] for r in rows]

    # -- sessions ---------------------------------------------------------------------------
    def record(self, session: Session, at: datetime) -> None:
        c = session.card
        self._conn().execute(
            """
            INSERT INTO sessions (session_id, status, card_kind, card_token, card_brand,
                card_last4, card_expiry, currency, hold_minor, authorized_minor,
                start_register_wh, energy_wh, amount_minor, started_at, charging_started_at,
                last_sample_at, ended_at, end_reason, updated_at, tariff_key, tariff_name)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT(session_id) DO UPDATE SET
                status=excluded.status, authorized_minor=excluded.authorized_minor,
                start_register_wh=excluded.start_register_wh, energy_wh=excluded.energy_wh,
                amount_minor=excluded.amount_minor,
                charging_started_at=excluded.charging_started_at,
                last_sample_at=excluded.last_sample_at, ended_at=excluded.ended_at,
                end_reason=excluded.end_reason, updated_at=excluded.updated_at
            """,
            (
                session.session_id,
                session.status.value,
                c.kind.value,
                c.token,
                c.brand,
                c.last4,
                c.expiry,
                session.currency,
                session.hold.minor,
                session.authorized.minor if session.authorized else None,
                session.start_register_wh,
                session.energy_wh,
                session.amount.minor if session.amount else None,
                _dt(session.started_at),
                _dt(session.charging_started_at),
                _dt(session.last_sample_at),
                _dt(session.ended_at),
                session.end_reason,
                _dt(at),
                session.tariff_key,
                session.tariff.name if session.tariff is not None else None,
            ),
        )

    def unsettled(self) -> list[Session]:
        rows = self._conn().execute(
            "SELECT * FROM sessions WHERE status NOT IN ('capturing','voiding','declined')"
            " ORDER BY started_at"
        )
        return [self._session(r) for r in rows]

    def session_row(self, session_id: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute("SELECT * FROM sessions WHERE session_id=?", (session_id,))
            .fetchone()
        )
        return dict(row) if row is not None else None

    def offline_book(self) -> tuple[int, int, datetime | None]:
        """Payment sessions started without the gateway's answer (their authorization still
        queued): the amount at risk (the cap while open, the amount once captured), how many,
        and the oldest start. A voided one is not counted: its void overtook the request."""
        row = (
            self._conn()
            .execute(
                """
                SELECT COALESCE(SUM(CASE WHEN s.status='capturing' THEN s.amount_minor
                                         ELSE s.authorized_minor END), 0),
                       COUNT(*), MIN(s.started_at)
                FROM sessions s JOIN outbox o
                  ON o.lane = s.session_id AND o.kind = 'authorize' AND o.state = ?
                WHERE s.card_kind = 'payment' AND s.authorized_minor IS NOT NULL
                  AND s.status NOT IN ('voiding', 'declined')
                """,
                (PENDING,),
            )
            .fetchone()
        )
        return int(row[0]), int(row[1]), _parse_dt(row[2])

    def sessions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute("SELECT * FROM sessions ORDER BY started_at")]

    def commands(self) -> list[dict[str, Any]]:
        """The gateway's commands as journaled (pay by phone), oldest first."""
        sql = "SELECT * FROM commands ORDER BY received_at, command_id"
        return [dict(r) for r in self._conn().execute(sql)]

    def mark_acknowledged(self, session_id: str) -> None:
        self._conn().execute("UPDATE sessions SET acknowledged=1 WHERE session_id=?", (session_id,))

    @staticmethod
    def _session(r: sqlite3.Row) -> Session:
        currency = r["currency"]
        started = _parse_dt(r["started_at"])
        assert started is not None
        return Session(
            session_id=r["session_id"],
            card=Card(
                kind=CardKind(r["card_kind"]),
                token=r["card_token"],
                brand=r["card_brand"],
                last4=r["card_last4"],
                expiry=r["card_expiry"],
            ),
            hold=Money(r["hold_minor"], currency),
            status=Status(r["status"]),
            started_at=started,
            authorized=(
                Money(r["authorized_minor"], currency)
                if r["authorized_minor"] is not None
                else None
            ),
            start_register_wh=r["start_register_wh"],
            energy_wh=r["energy_wh"],
            amount=Money(r["amount_minor"], currency) if r["amount_minor"] is not None else None,
            charging_started_at=_parse_dt(r["charging_started_at"]),
            last_sample_at=_parse_dt(r["last_sample_at"]),
            ended_at=_parse_dt(r["ended_at"]),
            end_reason=r["end_reason"],
            tariff_key=r["tariff_key"],
        )

    # -- the gateway's commands -------------------------------------------------------------
    def receive_command(
        self, *, command_id: str, kind: str, session_id: str, body: dict[str, Any], at: datetime
    ) -> bool:
        """Journal a command from the gateway before anything acts on it; False if it was
        received before (the gateway sends a command again until it has its answer)."""
        cursor = self._conn().execute(
            "INSERT OR IGNORE INTO commands (command_id, kind, session_id, body, received_at)"
            " VALUES (?,?,?,?,?)",
            (command_id, kind, session_id, json.dumps(body, sort_keys=True), _dt(at)),
        )
        return bool(cursor.rowcount)

    def mark_command_answered(self, command_id: str) -> None:
        self._conn().execute("UPDATE commands SET answered=1 WHERE command_id=?", (command_id,))

    def unanswered_commands(self) -> list[dict[str, Any]]:
        """Commands received and not answered (a restart between journaling a command and
        acting on it), oldest first, as the gateway sent them."""
        rows = self._conn().execute(
            "SELECT body FROM commands WHERE answered=0 ORDER BY received_at, command_id"
        )
        return [json.loads(r[0]) for r in rows]

    # -- outbox -----------------------------------------------------------------------------
    def enqueue(
        self, *, lane: str, kind: str, idem_key: str, path: str, body: dict[str, Any], at: datetime
    ) -> None:
        """Queue a request. A void supersedes its lane's unsent authorization (a reversal
        overtakes the request it reverses; the gateway refuses the late original), and turns
        its lane's unsent "started" (a start paid on the web, given up before the gateway
        took that answer) into "not started" with the void's reason, under a key of its own:
        the kiosk offers energy only once the gateway took "started", so a session given up
        before then never had any, and a gateway that took a late "started" would hold the
        phone's hold as a running session until the void came."""
        conn = self._conn()
        with self.atomic():
            if kind == "void":
                superseded = conn.execute(
                    "UPDATE outbox SET state=?, body=json_remove(body, '$.card.payload')"
                    " WHERE lane=? AND kind='authorize' AND state=?",
                    (SUPERSEDED, lane, PENDING),
                )
                if superseded.rowcount:
                    self._local.scrubbed = True  # checkpointed by the outermost commit
                # If "started" reached the gateway and only its answer was lost, the gateway
                # refuses "not started" (`command_started`) and the void follows as usual.
                conn.execute(
                    "UPDATE outbox SET idem_key=idem_key || ':not_started',"
                    " body=json_set(body, '$.status', 'not_started', '$.reason', ?)"
                    " WHERE lane=? AND kind='command_answer' AND state=?"
                    " AND json_extract(body, '$.status')='started'",
                    (str(body.get("reason", ""))[:64], lane, PENDING),
                )
            cursor = conn.execute(
                "INSERT OR IGNORE INTO outbox (lane, kind, idem_key, path, body, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (lane, kind, idem_key, path, json.dumps(body, sort_keys=True), _dt(at)),
            )
            if kind == "events" and cursor.lastrowid:
                self._bound_events(cursor.lastrowid)

    def enqueue_event(self, *, terminal_id: str, kind: str, detail: str, at: datetime) -> None:
        """Queue an event for the gateway (status, fault, alert). Each event has its own key,
        kept by the gateway: a batch retried with more events in it stores none twice."""
        key = f"{terminal_id}:event:{uuid.uuid4().hex}"
        self.enqueue(
            lane="events",
            kind="events",
            idem_key=key,
            path="/v1/events",
            body={
                "terminal_id": terminal_id,
                "event": {"key": key, "kind": kind, "detail": detail, "at": at.isoformat()},
            },
            at=at,
        )

    def shortfall(self, lane: str, capture_seq: int) -> tuple[int, int] | None:
        """For a capture not sent yet: (amount asked, amount the gateway holds) if the lane's
        authorization was answered with less than the capture asks (a late partial approval
        of a session started offline), else None. What the gateway holds is the largest
        `amount_authorized` of the lane's answered authorization and increments (an
        increment's answer carries the new total)."""
        conn = self._conn()
        capture = conn.execute("SELECT body FROM outbox WHERE seq=?", (capture_seq,)).fetchone()
        answers = conn.execute(
            "SELECT answer FROM outbox WHERE lane=? AND kind IN ('authorize', 'increment')"
            " AND state=? AND answer IS NOT NULL",
            (lane, DONE),
        ).fetchall()
        held = [
            amount.get("minor")
            for (text,) in answers
            if isinstance(amount := json.loads(text).get("amount_authorized"), dict)
        ]
        approved = max((m for m in held if isinstance(m, int)), default=None)
        if capture is None or approved is None:
            return None
        asked = json.loads(capture[0])["amount"]["minor"]
        if approved >= asked:
            return None
        return int(asked), approved

    def shrink_capture(
        self, lane: str, capture_seq: int, minor: int, receipt: dict[str, Any] | None = None
    ) -> None:
        """Lower an unsent capture to `minor` (what the gateway approved), and the session's
        amount and authorized amount with it: the driver pays what was captured. `receipt`
        replaces the body's receipt (the priced lines cut down to `minor` by a LIMIT line, so
        it totals the capture); the difference is the operator's, raised as an alert by the
        caller."""
        conn = self._conn()
        with self.atomic():
            conn.execute(
                "UPDATE outbox SET body = json_set(body, '$.amount.minor', ?)"
                " WHERE seq=? AND state=?",
                (minor, capture_seq, PENDING),
            )
            if receipt is not None:
                conn.execute(
                    "UPDATE outbox SET body = json_set(body, '$.receipt', json(?))"
                    " WHERE seq=? AND state=?",
                    (json.dumps(receipt), capture_seq, PENDING),
                )
            conn.execute(
                "UPDATE sessions SET amount_minor=?, authorized_minor=MIN(authorized_minor, ?)"
                " WHERE session_id=?",
                (minor, minor, lane),
            )

    def _bound_events(self, newest: int) -> None:
        """Drop unsent events older than the newest EVENTS_WINDOW rows (a cheap index probe
        first: nothing is counted until the window is passed)."""
        conn = self._conn()
        oldest = conn.execute(
            "SELECT MIN(seq) FROM outbox WHERE state=? AND lane='events'", (PENDING,)
        ).fetchone()[0]
        if oldest is None or newest - oldest < EVENTS_WINDOW:
            return
        dropped = conn.execute(
            "DELETE FROM outbox WHERE state=? AND lane='events' AND seq <= ?",
            (PENDING, newest - EVENTS_WINDOW),
        ).rowcount
        log.warning("event=events_dropped count=%d", dropped)

    def due(self, now_ms: int, limit: int = 50) -> list[OutboxRow]:
        """The head row of each lane, if it is due (order within a lane is kept)."""
        rows = self._conn().execute(
            """
            SELECT o.* FROM outbox o
            JOIN (SELECT lane, MIN(seq) AS seq FROM outbox WHERE state=? GROUP BY lane) h
              ON o.seq = h.seq
            WHERE o.next_attempt_ms <= ?
            ORDER BY (o.kind = 'authorize') DESC, o.seq
            LIMIT ?
            """,
            (PENDING, now_ms, limit),
        )
        return [self._row(r) for r in rows]

    def pending_events(self, limit: int, lane: str = "events") -> list[OutboxRow]:
        """The oldest pending rows of a batched lane ("events", "readings")."""
        rows = self._conn().execute(
            "SELECT * FROM outbox WHERE state=? AND lane=? ORDER BY seq LIMIT ?",
            (PENDING, lane, limit),
        )
        return [self._row(r) for r in rows]

    def next_due_ms(self) -> int | None:
        row = (
            self._conn()
            .execute("SELECT MIN(next_attempt_ms) FROM outbox WHERE state=?", (PENDING,))
            .fetchone()
        )
        return row[0] if row and row[0] is not None else None

    def finish(self, seq: int, state: str, answer: dict[str, Any] | None) -> None:
        """The row is answered (done) or refused for good (failed); an authorization's card
        payload is cut from it in the same write (see the module docstring)."""
        cursor = self._conn().execute(
            "UPDATE outbox SET state=?, answer=?, attempts=attempts+1,"
            " body = CASE WHEN kind = 'authorize'"
            " THEN json_remove(body, '$.card.payload') ELSE body END"
            " WHERE seq=? AND state=?",
            (state, json.dumps(answer) if answer is not None else None, seq, PENDING),
        )
        if cursor.rowcount:
            self._scrubbed_if_authorization(seq)

    def _scrubbed_if_authorization(self, seq: int) -> None:
        row = self._conn().execute("SELECT kind FROM outbox WHERE seq=?", (seq,)).fetchone()
        if row is not None and row[0] == "authorize":
            self._scrubbed()

    def retry_later(self, seq: int, next_attempt_ms: int, error: str) -> None:
        self._conn().execute(
            "UPDATE outbox SET attempts=attempts+1, next_attempt_ms=?, last_error=?"
            " WHERE seq=? AND state=?",
            (next_attempt_ms, error[:200], seq, PENDING),
        )

    def make_all_due(self) -> int:
        """Bring every waiting row's next attempt forward to now (a technician's `sync now`)."""
        cur = self._conn().execute(
            "UPDATE outbox SET next_attempt_ms=0 WHERE state=? AND next_attempt_ms > 0", (PENDING,)
        )
        return cur.rowcount

    def still_pending(self, seq: int) -> bool:
        row = self._conn().execute("SELECT state FROM outbox WHERE seq=?", (seq,)).fetchone()
        return row is not None and row[0] == PENDING

    def queue_stats(self) -> tuple[int, str | None]:
        """Depth (unsent rows of every kind) and the creation time of the oldest unsent row
        (rows are created in `seq` order)."""
        conn = self._conn()
        depth = conn.execute("SELECT COUNT(*) FROM outbox WHERE state=?", (PENDING,)).fetchone()
        oldest = conn.execute(
            "SELECT created_at FROM outbox WHERE state=? ORDER BY seq LIMIT 1", (PENDING,)
        ).fetchone()
        return int(depth[0]), oldest[0] if oldest else None

    def outbox(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute("SELECT * FROM outbox ORDER BY seq")]

    @staticmethod
    def _row(r: sqlite3.Row) -> OutboxRow:
        return OutboxRow(
            seq=r["seq"],
            lane=r["lane"],
            kind=r["kind"],
            idem_key=r["idem_key"],
            path=r["path"],
            body=json.loads(r["body"]),
            attempts=r["attempts"],
            next_attempt_ms=r["next_attempt_ms"],
            created_at=r["created_at"],
        )
