"""The fleet page's faults, out-of-service and newest event per terminal, kept as events arrive
(`gateway.ledger.terminal_health`), equal a replay of every stored event in order, on a
generated stream with resent batches, repeated and unknown faults, and terminals sending at
once; the migration's fill from events stored before equals it too. Both back-ends."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.ledger import Ledger, migrate, open_engine
from gateway.ledger.console_views import fleet
from gateway.ledger.schema import events
from gateway.ledger.store import aware
from gateway.ledger.terminal_health import rebuild

KINDS = ("fault", "fault_cleared", "out_of_service", "session_started", "door_opened")
FAULTS = ("meter_timeout", "welded_contactor", "reader_lost", "rcd_tripped")
State = dict[str, tuple[frozenset[str], bool, datetime | None]]


class Clock:
    """A clock that moves on by a second each time it is read (thread-safe)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, tzinfo=UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.now += timedelta(seconds=1)
            return self.now


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    engine = open_engine(db_url)
    migrate(engine)
    try:
        yield Ledger(engine, Clock())
    finally:
        engine.dispose()


def replay(ledger: Ledger) -> State:
    """The reference: every stored event in `seq` order, as the fleet page once read them."""
    faults: dict[str, set[str]] = {}
    out: dict[str, bool] = {}
    last: dict[str, datetime] = {}
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(events).order_by(events.c.seq)).all()
    for row in rows:
        tid = row.terminal_id
        faults.setdefault(tid, set())
        out.setdefault(tid, False)
        at = aware(row.at)
        last[tid] = max(last.get(tid, at), at)
        if row.kind == "fault":
            faults[tid].add(row.detail)
        elif row.kind == "fault_cleared":
            faults[tid].discard(row.detail)
        elif row.kind == "out_of_service":
            out[tid] = row.detail == "on"
    return {tid: (frozenset(faults[tid]), out[tid], last[tid]) for tid in faults}


def kept(ledger: Ledger) -> State:
    """What the fleet page shows of the terminals that sent events."""
    return {
        t.terminal_id: (frozenset(t.faults), t.out_of_service, t.last_seen)
        for t in fleet(ledger.engine)
        if t.last_seen is not None
    }


def stream(rng: random.Random, terminal: str, count: int) -> list[tuple[str, str, str]]:
    """(key, kind, detail) events of one terminal: faults raised and cleared (some never
    raised), out-of-service on and off (and an odd detail), and events the page ignores."""
    out = []
    for n in range(count):
        kind = rng.choice(KINDS)
        if kind in ("fault", "fault_cleared"):
            detail = rng.choice(FAULTS)
        elif kind == "out_of_service":
            detail = rng.choice(("on", "off", "on", "maybe"))
        else:
            detail = f"{n}"
        out.append((f"{terminal}-ev-{n:05d}", kind, detail))
    return out


def send(
    ledger: Ledger, rng: random.Random, terminal: str, items: list[tuple[str, str, str]]
) -> None:
    """In batches of 1-8, each sometimes sent again (a lost answer), sometimes with the
    previous batch's last event in front (a batch cut differently on its retry)."""
    sent: list[tuple[str, str, str]] = []
    at = 0
    while at < len(items):
        batch = items[at : at + rng.randint(1, 8)]
        if sent and rng.random() < 0.2:
            batch = [sent[-1], *batch]
        for _ in range(2 if rng.random() < 0.2 else 1):
            with ledger.write() as conn:
                ledger.add_events(conn, terminal, batch)
        sent += batch
        at += len(batch) - (1 if batch[0] in sent[: -len(batch)] else 0)


def test_health_kept_as_events_arrive_equals_the_replay(ledger: Ledger) -> None:
    rng = random.Random(1306)
    terminals = [f"KIOSK-{n:04d}" for n in range(6)]
    for round_ in range(5):
        for terminal in terminals:
            items = stream(rng, terminal, 40)
            send(ledger, rng, terminal, [(f"{k}-r{round_}", kind, d) for k, kind, d in items])
        assert kept(ledger) == replay(ledger)
    state = replay(ledger)
    assert set(state) == set(terminals)
    assert any(faults for faults, _, _ in state.values())  # the stream left some active
    assert any(out for _, out, _ in state.values()) and not all(o for _, o, _ in state.values())
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    assert stored == 6 * 5 * 40  # every event once, whatever was resent


def test_terminals_sending_at_once_keep_their_health(ledger: Ledger) -> None:
    rng = random.Random(61)
    streams = {f"KIOSK-{n:04d}": stream(rng, f"KIOSK-{n:04d}", 120) for n in range(4)}

    def run(terminal: str) -> None:
        send(ledger, random.Random(terminal), terminal, streams[terminal])

    threads = [threading.Thread(target=run, args=(t,)) for t in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert kept(ledger) == replay(ledger)


def test_the_migrations_fill_equals_the_replay(ledger: Ledger) -> None:
    """Events stored before the tables existed (here: written to `events` alone) are what
    the migration replays into them."""
    rng = random.Random(7)
    with ledger.engine.begin() as conn:
        for n in range(3):
            terminal = f"KIOSK-{n:04d}"
            for key, kind, detail in stream(rng, terminal, 60):
                conn.execute(
                    sa.insert(events).values(
                        terminal_id=terminal, key=key, kind=kind, detail=detail, at=ledger.clock()
                    )
                )
    assert kept(ledger) == {}  # nothing kept for events that bypassed the ledger
    with ledger.engine.begin() as conn:
        assert rebuild(conn) == 3
    assert kept(ledger) == replay(ledger)
    assert len(replay(ledger)) == 3
