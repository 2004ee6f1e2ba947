"""Simulated contactless reader: tests and scripts put cards in its field."""

from __future__ import annotations

import threading

from hardware.ports import CardTarget, ReaderFault


class SimReader:
    """Implements `hardware.ports.CardReader`.

    `present(card)` puts a card in the field (returned once by `poll`), `remove()` takes it away,
    `unplug()` makes `poll` raise `ReaderFault` until `replug()`. `presented` records every card
    put in the field."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: CardTarget | None = None
        self._closed = False
        self.unplugged = False
        self.presented: list[CardTarget] = []

    def poll(self, timeout: float) -> CardTarget | None:
        with self._cond:
            if self.unplugged:
                raise ReaderFault("reader not answering")
            if self._pending is None and timeout > 0 and not self._closed:
                self._cond.wait(timeout)
            card, self._pending = self._pending, None
            return card

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def present(self, card: CardTarget) -> None:
        with self._cond:
            self._pending = card
            self.presented.append(card)
            self._cond.notify_all()

    @property
    def pending(self) -> bool:
        """A card is presented and not read yet."""
        with self._cond:
            return self._pending is not None

    def remove(self) -> None:
        with self._cond:
            self._pending = None

    def unplug(self) -> None:
        self.unplugged = True

    def replug(self) -> None:
        self.unplugged = False
