"""Group commit: the money path's transactions of one worker share commits.

A money step is several small transactions (claim the key and the step, the processor's own
books, record the outcome), each of which must be durable before the step goes on. Committed
one by one, every one of them pays a commit of its own: an fsync of the WAL on SQLite
(`synchronous=FULL`), a round trip and a WAL flush on PostgreSQL. Databases solve this for
themselves with group commit; this module does the same one level up, because SQLite has
one writer at a time and no group commit of its own.

`GroupCommit.unit()` is used like `engine.begin()`:

    with writer.unit() as conn:
        ...  # statements of one transaction

Units run one at a time on the worker's one write connection, each inside a savepoint (but
the batch's first), so a unit that raises undoes only its own statements (ROLLBACK TO its
savepoint); a unit that succeeds leaves its savepoint to end with the transaction, which
saves a round trip per unit. Units that arrive while others are running
or waiting join the open transaction; it is committed when nobody else is waiting to join it
(or it holds `max_units`). Every unit, whatever it did, returns (or raises) only once the
transaction it ran in is committed: nothing a unit read or wrote is acted on before it is
durable, exactly as with a transaction of its own. If the commit fails, every unit of the
batch raises that error and none of them took effect (the kiosk retries, as after any other
failed request).

What this keeps: each unit is atomic (its savepoint), isolated from other workers as a
transaction is (its rows are locked or, on SQLite, the whole database is, until the commit),
and durable before it returns. What it changes: units of one batch see each other's writes in
order, as if run one after the other, which they are.

A unit must not open another unit (it would wait for itself): `unit()` refuses that.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine, RootTransaction

from gateway.ledger.statements import command, commit_transaction

MAX_UNITS = 64  # a batch is committed at this size even while more units wait


def _driver_sql(conn: Connection, sql: str) -> None:
    """A savepoint statement straight on the driver (`statements.command`): the same
    statement through SQLAlchemy's nested transactions costs about 150 Python calls, a
    unit's own statements about 50 each. SQLAlchemy need not know of these savepoints: they
    only ever undo a unit's own statements, and the batch's transaction ends as it began."""
    command(conn, sql)


class BatchFailed(Exception):
    """The transaction a unit ran in could not be committed; the unit took no effect."""


class _Batch:
    """One open transaction and the units in it; `done` is set once it is committed (or
    lost: then `error` says why)."""

    __slots__ = ("conn", "done", "error", "generation", "txn", "units")

    def __init__(self, conn: Connection, txn: RootTransaction, generation: int) -> None:
        self.conn = conn
        self.txn = txn
        self.generation = generation  # `GroupCommit.close` since the connection was taken
        self.units = 0
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """One worker's write transactions on `engine`, committed in groups (module docstring).

    The connection is used by one thread at a time: a thread that finds it in use queues
    with a ticket of its own and is handed the turn in arrival order (one wake-up per
    handover, not a herd). The unit that ends with nobody queued behind it commits the batch,
    still holding the turn, so units that arrive during the commit form the next batch."""

    def __init__(self, engine: Engine, max_units: int = MAX_UNITS) -> None:
        self.engine = engine
        self.max_units = max_units
        self._mutex = threading.Lock()
        self._busy = False
        self._queue: deque[threading.Lock] = deque()
        self._batch: _Batch | None = None
        self._local = threading.local()
        # The connection kept between batches (PostgreSQL), and how often it was given back.
        self._keeps = engine.dialect.name == "postgresql"
        self._kept: Connection | None = None
        self._generation = 0
        _close_on_dispose(engine, self)
        # Figures for the bench and the tests: batches committed, units in them.
        self.commits = 0
        self.committed_units = 0

    @contextmanager
    def unit(self, *, savepoint: bool = True) -> Iterator[Connection]:
        """One unit of work (module docstring). `savepoint=False` is for a unit that raises
        only when something is broken (a database error, a bug), not to refuse: it costs no
        savepoint round trip, and if it does raise, its whole batch is lost (rolled back;
        every other unit of it raises `BatchFailed`, as when a commit fails)."""
        if getattr(self._local, "inside", False):
            raise RuntimeError("a unit of work cannot open another one")
        self._take_turn()
        error: BaseException | None = None
        batch: _Batch | None = None
        self._local.inside = True
        lost_batch = False  # this unit raised without a savepoint and took its batch down
        try:
            batch = self._open()
            alone = batch.units == 0  # the batch's first unit needs no savepoint of its own
            guarded = savepoint and not alone
            batch.units += 1
            if guarded:
                try:
                    _driver_sql(batch.conn, "SAVEPOINT ev_unit")
                except BaseException as exc:
                    self._end(batch, commit=False, error=exc)
                    raise
            try:
                yield batch.conn
            except BaseException as exc:
                error = exc
            try:
                if not guarded:
                    if error is not None:  # no savepoint of its own: roll the batch back
                        lost_batch = not alone
                        self._end(batch, commit=False, error=error if lost_batch else None)
                elif error is not None:
                    # The newest savepoint of that name is this unit's (units run one after
                    # the other). A unit that succeeded leaves its savepoint in place: it is
                    # ended with the transaction, and a RELEASE would be one more round trip
                    # per unit for nothing (the next unit's SAVEPOINT of the same name hides
                    # it; SQL:2011, PostgreSQL and SQLite alike).
                    _driver_sql(batch.conn, "ROLLBACK TO SAVEPOINT ev_unit")
                if not batch.done.is_set() and self._should_commit(batch):
                    self._end(batch, commit=True)
            except BaseException as exc:
                # The savepoint or the commit failed: the whole batch is lost.
                if not batch.done.is_set():
                    self._end(batch, commit=False, error=exc)
                if error is None:
                    error = exc
        finally:
            self._local.inside = False
            self._pass_turn()
        if batch is not None:
            # Even a unit that raised answers only from a state that was committed.
            batch.done.wait()
            lost = batch.error
            if lost is not None and (error is None or (error is lost and not lost_batch)):
                raise BatchFailed(f"the transaction could not be committed: {lost}") from lost
        if error is not None:
            raise error

    # -- the turn ---------------------------------------------------------------------------
    def _take_turn(self) -> None:
        with self._mutex:
            if not self._busy:
                self._busy = True
                return
            ticket = threading.Lock()
            ticket.acquire()
            self._queue.append(ticket)
        ticket.acquire()  # released by `_pass_turn`: the turn is ours

    def _pass_turn(self) -> None:
        with self._mutex:
            if self._queue:
                self._queue.popleft().release()
            else:
                self._busy = False

    def _should_commit(self, batch: _Batch) -> bool:
        with self._mutex:
            return not self._queue or batch.units >= self.max_units

    # -- the batch --------------------------------------------------------------------------
    def _open(self) -> _Batch:
        if self._batch is None:
            with self._mutex:
                conn, self._kept = self._kept, None
                generation = self._generation
            if conn is None:
                conn = self.engine.connect()
            try:
                txn = conn.begin()
            except BaseException:
                conn.close()
                raise
            self._batch = _Batch(conn, txn, generation)
        return self._batch

    def close(self) -> None:
        """Give back the connection kept between batches (the engine's `dispose` calls this
        first, so no connection is left checked out of a disposed pool). The writer stays
        usable: its next batch checks a connection out again."""
        with self._mutex:
            conn, self._kept = self._kept, None
            self._generation += 1  # a batch running now gives its connection back at its end
        if conn is not None:
            conn.close()

    def _end(self, batch: _Batch, *, commit: bool, error: BaseException | None = None) -> None:
        self._batch = None
        ended = False
        try:
            if commit:
                commit_transaction(batch.conn)  # PostgreSQL: sent as the statements are
                batch.txn.commit()
                self.commits += 1
                self.committed_units += batch.units
            else:
                batch.error = error
                batch.txn.rollback()
            ended = True
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            try:
                self._keep_or_close(batch, ended)
            finally:
                batch.done.set()

    def _keep_or_close(self, batch: _Batch, ended: bool) -> None:
        """On PostgreSQL a connection whose transaction ended cleanly serves the next batch:
        a pool check-out costs a pre-ping round trip and its Python each time, and with
        several workers a batch holds two or three units. Anything else goes back to the
        pool (SQLite's check-out is cheap, and a connection left checked out of an engine
        that is never disposed would be reported when it is collected)."""
        keep = ended and self._keeps
        with self._mutex:
            if keep and batch.generation == self._generation and self._kept is None:
                self._kept = batch.conn
                return
        batch.conn.close()


def _close_on_dispose(engine: Engine, writer: GroupCommit) -> None:
    """Make `engine.dispose()` give back `writer`'s kept connection first (an instance
    attribute over the method: an engine event would make SQLAlchemy dispatch events around
    every statement of the engine)."""
    dispose = engine.dispose

    def dispose_and_close(close: bool = True) -> None:
        writer.close()
        dispose(close)

    engine.dispose = dispose_and_close  # type: ignore[method-assign]


_ATTRIBUTE = "_ev_group_commit"
_CREATING = threading.Lock()


def writer_for(engine: Engine) -> GroupCommit:
    """The engine's group-commit writer, kept on the engine itself: one per engine, as an
    engine has one pool. The ledger and the simulated processor's books share its batches,
    so on SQLite two writers of one process never wait on each other's database lock."""
    with _CREATING:
        writer = engine.__dict__.get(_ATTRIBUTE)
        if writer is None:
            writer = GroupCommit(engine)
            setattr(engine, _ATTRIBUTE, writer)
        assert isinstance(writer, GroupCommit)
        return writer
