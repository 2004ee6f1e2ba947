"""Hands hardware fault inputs (emergency stop, RCD trip) from the thread that sees the edge to
the daemon's event queue.

The pi wiring opens the relay itself in the input's callback (the fastest path, in the pin
factory's event thread) and then tells the daemon through this sink, so the machine ends the
session, shows the fault and reports it. The wiring is built before the daemon exists, so the
sink keeps what it is told until `connect(daemon.post)`; the service connects it right after
building the daemon, and the kept events go to the daemon's queue in order, behind the
contactor-open the daemon does first at start-up. Inputs already active at start-up give no
edge; the wiring reports them as raised when it builds the inputs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hardware.clock import Clock
from terminal.core.events import Event, FaultCleared, FaultRaised

Post = Callable[[Event], None]


class FaultSink:
    """Thread-safe: `raised` and `cleared` may be called from any thread, before or after
    `connect`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._post: Post | None = None
        self._kept: list[Event] = []

    def raised(self, fault: str) -> None:
        self._send(FaultRaised(fault=fault, at_ms=self._clock.monotonic_ms(), at=self._clock.now()))

    def cleared(self, fault: str) -> None:
        self._send(
            FaultCleared(fault=fault, at_ms=self._clock.monotonic_ms(), at=self._clock.now())
        )

    def connect(self, post: Post) -> None:
        """From now on, post to `post`; what came before is posted first, in order."""
        with self._lock:
            self._post = post
            kept, self._kept = self._kept, []
            for event in kept:
                post(event)

    def _send(self, event: Event) -> None:
        with self._lock:
            if self._post is None:
                self._kept.append(event)
            else:
                self._post(event)
