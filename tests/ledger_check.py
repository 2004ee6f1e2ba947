"""The check every scripted run ends with: the gateway's ledger agrees with the journal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from gateway.ledger import open_engine
from gateway.ledger.rollup import expected_rows, stored_rows
from gateway.ledger.rollup_pending import catch_up
from gateway.ledger.schema import kiosk_commands, movements
from gateway.processors.methods import WEB_METHODS
from launcher.simulate import Simulation

WEB_KINDS = WEB_METHODS  # holds placed by the payment page, not by a terminal


def assert_ledger_agrees(sim: Simulation) -> int:
    """The simulation's journal against its embedded gateway (`assert_records_agree`), and
    its sessions paid on a phone (`assert_web_payments_agree`); returns how many of those."""
    refused = {
        row["lane"]
        for row in sim.daemon.journal.outbox()
        if row["kind"] in ("capture", "void") and row["state"] == "failed"
    }
    sessions = sim.daemon.journal.sessions()
    authorizations = sim.gateway.ledger.all_authorizations()
    moves = sim.gateway.ledger.all_movements()
    assert_records_agree(sessions, authorizations, moves, refused=refused)
    with sim.gateway.ledger.engine.connect() as conn:
        commands = [dict(r._mapping) for r in conn.execute(sa.select(kiosk_commands))]
    assert_rollup_agrees(sim.gateway.ledger.engine)
    return assert_web_payments_agree(
        sessions,
        authorizations,
        moves,
        commands=commands,
        kiosk_commands=sim.daemon.journal.commands(),
        refused=refused,
    )


def assert_rollup_agrees(engine: sa.Engine | str) -> None:
    """The revenue rollup, once what is pending is rolled up (as before every report), equals
    a sum made from scratch from the movements and their receipts (`gateway.ledger.rollup`),
    and no movement is left unrolled. `engine`: an engine or a database URL (a SQLite
    file's path)."""
    own = isinstance(engine, str)
    bound = open_engine(engine) if isinstance(engine, str) else engine
    try:
        catch_up(bound)
        with bound.connect() as conn:
            stored, expected = stored_rows(conn), expected_rows(conn)
            unrolled = conn.scalar(
                sa.select(sa.func.count()).select_from(movements).where(~movements.c.rolled)
            )
    finally:
        if own:
            bound.dispose()
    assert unrolled == 0
    assert stored == expected, {
        k: (stored.get(k), expected.get(k))
        for k in stored.keys() | expected.keys()
        if stored.get(k) != expected.get(k)
    }


def assert_records_agree(
    sessions: Iterable[dict[str, Any]],
    authorizations: Iterable[dict[str, Any]],
    moves: list[dict[str, Any]],
    *,
    refused: set[str] | frozenset[str] = frozenset(),
    lost: set[str] | frozenset[str] = frozenset(),
) -> None:
    """The journals' sessions (of one kiosk or several) against the gateway's ledger rows.
    `refused`: sessions whose capture or void the gateway refused for good (the journal
    knows, and raised an event): they hold nothing and moved no money. `lost`: authorizations
    a damaged journal took with it (set aside, or a lost `-wal`): each ended exactly once, as
    captured before the loss or released after it (`journal_lost`), and holds nothing."""
    journal = {row["session_id"]: row for row in sessions}
    ledger = {row["id"]: row for row in authorizations}
    holds = Counter(m["authorization_id"] for m in moves if m["kind"] == "hold")
    # What each authorization holds in all: the first hold plus its increments.
    held: Counter[str] = Counter()
    for m in moves:
        if m["kind"] in ("hold", "increment"):
            assert m["amount"] > 0, m
            held[m["authorization_id"]] += m["amount"]
    assert {m["authorization_id"] for m in moves if m["kind"] == "increment"} <= set(holds)
    ends = Counter(m["authorization_id"] for m in moves if m["kind"] in ("capture", "release"))
    # Every hold ended in exactly one capture or release, and nothing ended twice.
    assert all(n == 1 for n in holds.values()), holds
    assert all(n == 1 for n in ends.values()), ends
    assert set(ends) <= set(holds)
    for sid, row in journal.items():
        assert row["status"] in ("capturing", "voiding", "declined"), (sid, row["status"])
        at_gateway = ledger.get(sid)
        if sid in refused:
            assert at_gateway is None or at_gateway["status"] in ("declined", "voided"), sid
            assert holds[sid] == ends[sid], sid  # nothing left held
            assert not [m for m in moves if m["authorization_id"] == sid and m["kind"] == "capture"]
            continue
        assert row["acknowledged"] or row["status"] == "declined", sid
        if row["status"] == "capturing":
            assert at_gateway is not None
            assert at_gateway["status"] == "captured"
            assert at_gateway["amount_captured"] == row["amount_minor"]
            assert at_gateway["amount_captured"] <= at_gateway["amount_authorized"]
            assert at_gateway["amount_authorized"] == held[sid]
            # The terminal never counts on more than the gateway holds.
            assert row["authorized_minor"] <= at_gateway["amount_authorized"]
            assert at_gateway["energy_wh"] == row["energy_wh"] > 0
            assert ends[sid] == 1
        elif row["status"] == "voiding":
            assert at_gateway is not None
            # failed: the processor never placed the hold (its answer was lost on the way)
            assert at_gateway["status"] in ("voided", "declined", "failed")
            assert holds[sid] == ends[sid]
        else:
            assert at_gateway is None or at_gateway["status"] == "declined"
            assert holds[sid] == 0
    for sid in lost:
        row = ledger[sid]
        assert row["status"] in ("captured", "voided", "declined", "failed"), (sid, row)
        assert holds[sid] == ends[sid], sid  # nothing left held
        if row["void_reason"] == "journal_lost":
            assert not [m for m in moves if m["authorization_id"] == sid and m["kind"] == "capture"]

    # And the gateway holds nothing the terminal does not know about, but holds paid on the
    # web that never became a session (the kiosk said "not started", or never got the start
    # before the code expired): each of those was released.
    for aid in set(holds) - set(journal) - set(lost):
        assert ledger[aid]["card_kind"] in WEB_KINDS, aid
        assert ledger[aid]["status"] == "voided" and ends[aid] == holds[aid], aid
    # Nothing is left half-done at the gateway: no processor step without its outcome.
    assert not [row["id"] for row in ledger.values() if row.get("op")], "unsettled steps"
    assert_change_agrees(ledger.values(), moves)


def assert_change_agrees(
    authorizations: Iterable[dict[str, Any]], moves: list[dict[str, Any]]
) -> None:
    """A prepayment (Lightning) ended owing its payer exactly what it did not capture: the
    hold less the capture, or all of it when released (`change_owed`, with the capture or
    release). What was paid back (`change_paid`) never passes what was owed; nothing else
    owes change."""
    owed: Counter[str] = Counter()
    paid: Counter[str] = Counter()
    for m in moves:
        if m["kind"] == "change_owed":
            assert owed[m["authorization_id"]] == 0, m  # recorded once
            owed[m["authorization_id"]] += m["amount"]
        elif m["kind"] == "change_paid":
            paid[m["authorization_id"]] += m["amount"]
    for row in authorizations:
        aid = row["id"]
        assert paid[aid] <= owed[aid], (aid, paid[aid], owed[aid])
        held = row["amount_authorized"] or 0
        if row["card_kind"] != "lightning" or not held:
            assert owed[aid] == 0, (aid, row["card_kind"])
        elif row["status"] == "captured":
            assert owed[aid] == held - row["amount_captured"], (aid, owed[aid])
        elif row["status"] == "voided":
            assert owed[aid] == held, (aid, owed[aid])


def assert_web_payments_agree(
    sessions: Iterable[dict[str, Any]],
    authorizations: Iterable[dict[str, Any]],
    moves: list[dict[str, Any]],
    *,
    commands: Iterable[dict[str, Any]],
    kiosk_commands: Iterable[dict[str, Any]],
    refused: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Pay by phone (QR-paid sessions) across the three records: the gateway's web holds and
    its commands to the kiosks (`kiosk_commands`), and the kiosks' journals (their sessions
    and the commands they journaled). Every web hold was sent to a kiosk in exactly one start
    command, and every command was answered; a start the kiosk answered "started" is a
    session in its journal, paid on the web, that journaled the command (and ended in one
    capture or release, which `assert_records_agree` checks against the journal); a start not
    started (refused by the kiosk, or given up at expiry) released its hold and captured
    nothing; a web session in a journal was answered "started" at the gateway. Returns how
    many web holds became sessions (for a test to say it exercised some)."""
    journal = {row["session_id"]: row for row in sessions}
    ledger = {row["id"]: row for row in authorizations}
    journaled = {row["command_id"]: row for row in kiosk_commands}
    holds = Counter(m["authorization_id"] for m in moves if m["kind"] == "hold")
    ends = Counter(m["authorization_id"] for m in moves if m["kind"] in ("capture", "release"))
    captured = {m["authorization_id"] for m in moves if m["kind"] == "capture"}
    starts: dict[str, list[dict[str, Any]]] = {}
    for command in commands:
        assert command["state"] != "pending", f"command never answered: {command}"
        if command["kind"] == "start":
            starts.setdefault(command["authorization_id"], []).append(command)
    web = {aid for aid, row in ledger.items() if row["card_kind"] in WEB_KINDS and holds[aid]}
    assert set(starts) <= set(ledger), set(starts) - set(ledger)
    for aid in web - set(starts):
        # Paid on the web but never sent to a kiosk (an invoice paid after its code expired,
        # a hold whose answer was lost while the driver paid): released, nothing captured.
        context = (aid, ledger[aid])
        assert ledger[aid]["status"] == "voided" and aid not in captured, context
        assert ends[aid] == holds[aid] == 1 and aid not in journal, context
    started = 0
    for aid, [command, *more] in starts.items():
        assert not more, f"{aid}: sent in {len(more) + 1} start commands"
        context = (aid, command, ledger[aid])
        if command["state"] == "started":
            assert aid in journal, context
            assert journal[aid]["card_kind"] == "web", (context, journal[aid])
            assert command["id"] in journaled and journaled[command["id"]]["answered"], context
            started += 1
        else:
            assert command["state"] in ("not_started", "expired"), context
            assert aid not in journal or journal[aid]["status"] == "voiding", context
            assert aid not in captured and ends[aid] == holds[aid] == 1, context
            assert ledger[aid]["status"] == "voided", context
    for sid, row in journal.items():
        if row["card_kind"] != "web" or sid in refused:
            continue
        [command] = starts.get(sid, [None])
        assert command is not None, (sid, row)
        # "started" refused by the gateway (it had released the hold): voided, never charged.
        assert command["state"] == "started" or row["status"] == "voiding", (sid, row, command)
    return started


def assert_processor_agrees(
    authorizations: Iterable[dict[str, Any]], payments: Iterable[dict[str, Any]]
) -> None:
    """The processor's own books against the ledger: every hold it placed was captured or
    released exactly once, as the ledger says, and it holds nothing the ledger does not know."""
    ledger = {row["id"]: row for row in authorizations}
    for payment in payments:
        row = ledger.get(payment["payment_id"])
        assert row is not None, f"processor hold {payment['reference']} has no ledger row"
        assert row["processor_ref"] == payment["reference"], payment
        if row["status"] == "captured":
            assert payment["state"] == "captured", (row["id"], payment["state"])
            assert payment["captured"] == row["amount_captured"], row["id"]
            assert payment["refunded"] == row["amount_refunded"], row["id"]
        elif row["status"] == "voided":
            assert payment["state"] == "released", (row["id"], payment["state"])
        else:
            raise AssertionError(
                f"{row['id']} is {row['status']} at the gateway, "
                f"{payment['state']} at the processor"
            )
