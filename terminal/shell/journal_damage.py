"""A damaged journal is found, set aside and survived, never a traceback or a silent empty start.

An SD card's journal can be cut short by a power loss, hit by a bad block, replaced by a wrong
file, or lose its `-wal` (SQLite then opens the database as it was at the last checkpoint,
without the newest transactions, and says nothing). Two defences:

1. **At start** (`open_journal`): the journal is opened, migrated, `PRAGMA integrity_check`ed
   and asked for its identity (a random id made with it, bound to this terminal). If any of
   that fails — not a database, malformed pages, a database of other tables, a newer schema,
   another terminal's journal — the whole file set (database, `-wal`, `-shm`) is moved into
   `damaged-<UTC time>/` beside it, kept for diagnosis, and a new empty journal is opened. The
   daemon starts with the fault `journal_damaged`: out of service, on the console, an event to
   the gateway. A full disk is not damage (`JournalFull` goes on as it is).
2. **Once per start** (`reconcile`, run by the sender): the gateway says which holds this
   terminal still has open and which authorization it saw last from it
   (`GET /v1/terminals/{id}/open-authorizations`). Every authorization the gateway holds was
   journaled before it was sent, so an intact journal knows them all. An open hold the journal
   does not know is released (a void with reason `journal_lost`, through the outbox like any
   void) with a `hold_unknown` alert for the operator; a newest authorization the journal does
   not know means it lost transactions or was replaced (`journal_behind`). This catches a lost
   `-wal` and an empty or swapped journal that opened cleanly. Then `journal_damaged` clears.

A hold the lost journal had is released, never captured: the energy of its session is not in
any record the kiosk still has, and a driver is never charged for energy no record proves.
The difference is the operator's to look at (the `hold_unknown` alert names the hold).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from terminal.errors import JournalError, JournalFull
from terminal.shell.journal import Journal, JournalIdentity

log = logging.getLogger("ev_terminal.journal")

JOURNAL_DAMAGED = "journal_damaged"  # the fault from a set-aside journal until reconciled
LOST_REASON = "journal_lost"  # the void reason of a hold the journal does not know
_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedJournal:
    journal: Journal
    identity: JournalIdentity
    damage: str | None = None  # what was wrong with the journal set aside
    aside: Path | None = None  # where it was set aside


def open_journal(path: Path, terminal_id: str, *, now: datetime | None = None) -> OpenedJournal:
    """Open and check the journal at `path` (see the module docstring)."""
    journal: Journal | None = None
    try:
        journal = Journal(path)
        journal.check()
        identity = journal.spend_reserve(lambda: journal_identity(journal, terminal_id))
    except JournalFull:
        raise
    except (sqlite3.DatabaseError, JournalError) as exc:
        if journal is not None:
            journal.close()
        aside = set_aside(path, now or datetime.now(UTC))
        damage = f"{type(exc).__name__}: {exc}"
        log.error("event=journal_damaged error=%s set_aside=%s", damage, aside)
        fresh = Journal(path)
        identity = fresh.spend_reserve(lambda: journal_identity(fresh, terminal_id))
        log.info("event=journal_opened journal_id=%s new=True", identity.journal_id)
        return OpenedJournal(journal=fresh, identity=identity, damage=damage, aside=aside)
    log.info("event=journal_opened journal_id=%s new=%s", identity.journal_id, identity.new)
    return OpenedJournal(journal=journal, identity=identity)


def journal_identity(journal: Journal, terminal_id: str) -> JournalIdentity:
    return journal.identity(terminal_id)


def set_aside(path: Path, now: datetime) -> Path:
    """Move the journal's file set into a new `damaged-<time>` directory beside it (a rename:
    no copy on a disk that may be full), and make the move durable."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.parent / f"damaged-{stamp}"
    aside.mkdir(mode=0o700)
    for suffix in _SUFFIXES:
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside / source.name)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciled:
    released: tuple[str, ...]  # open holds the journal did not know: voids queued
    behind: bool  # the gateway saw an authorization the journal does not know


def parse_open_holds(
    data: dict[str, Any], terminal_id: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The gateway's answer, strictly: (open holds, the newest authorization id or None).
    ValueError if it is not well-formed or about another terminal."""
    if data.get("terminal_id") != terminal_id:
        raise ValueError("answer about another terminal")
    holds = data.get("authorizations")
    newest = data.get("newest_authorization_id")
    if not isinstance(holds, list) or not (newest is None or isinstance(newest, str)):
        raise ValueError("malformed answer")
    for hold in holds:
        amount = hold.get("amount") if isinstance(hold, dict) else None
        if (
            not isinstance(hold, dict)
            or not isinstance(hold.get("authorization_id"), str)
            or not isinstance(amount, dict)
            or not isinstance(amount.get("minor"), int)
            or not isinstance(amount.get("currency"), str)
        ):
            raise ValueError("malformed hold")
    return holds, newest


def reconcile(
    journal: Journal, data: dict[str, Any], *, terminal_id: str, at: datetime
) -> Reconciled:
    """Queue a void and a `hold_unknown` alert for every open hold the journal does not know,
    and a `journal_behind` alert if the gateway's newest authorization is unknown to it; all
    in one journal transaction (a crash before it commits leaves the next start to do it)."""
    holds, newest = parse_open_holds(data, terminal_id)
    released: list[str] = []
    with journal.atomic():
        behind = newest is not None and not journal.knows(newest)  # before any void is queued
        for hold in holds:
            sid = hold["authorization_id"]
            if journal.knows(sid):
                continue
            released.append(sid)
            journal.enqueue(
                lane=sid,
                kind="void",
                idem_key=f"{sid}:void",
                path=f"/v1/authorizations/{sid}/void",
                body={"reason": LOST_REASON},
                at=at,
            )
            amount = hold["amount"]
            journal.enqueue_event(
                terminal_id=terminal_id,
                kind="hold_unknown",
                detail=f"{sid} amount={amount['minor']} {amount['currency']} released",
                at=at,
            )
        if behind:
            journal.enqueue_event(
                terminal_id=terminal_id,
                kind="journal_behind",
                detail=f"the gateway's newest authorization {newest} is not in the journal",
                at=at,
            )
    for sid in released:
        log.error("event=hold_unknown session=%s action=void", sid)
    if behind:
        log.error("event=journal_behind newest=%s", newest)
    return Reconciled(released=tuple(released), behind=behind)
