"""Simulated display: remembers every frame, optionally draws it as text."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from hardware.ports import Frame

HISTORY = 1000  # frames kept: a long session redraws every meter sample


class SimDisplay:
    """Implements `hardware.ports.Display`; `frames` is the recent history (bounded, so a
    long-running simulator does not grow), `current` the last frame."""

    def __init__(self, on_show: Callable[[Frame], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.frames: deque[Frame] = deque(maxlen=HISTORY)
        self._on_show = on_show

    def show(self, frame: Frame) -> None:
        with self._lock:
            self.frames.append(frame)
        if self._on_show is not None:
            self._on_show(frame)

    @property
    def current(self) -> Frame | None:
        with self._lock:
            return self.frames[-1] if self.frames else None


def render_text(frame: Frame, width: int = 40) -> str:
    """Draw a frame as a boxed block of text, as the demo shows it in the terminal."""
    inner = width - 4
    rows = [frame.title.upper()[:inner], ""]
    rows += [line[:inner] for line in frame.lines]
    rows += [f"{label}: {value}"[:inner] for label, value in frame.fields]
    if frame.qr:
        label = "Receipt" if frame.name == "receipt" else "Pay by phone"  # the QR's link
        rows += ["", f"{label}: {frame.qr}"[:inner]]
    top = "+" + "-" * (width - 2) + "+"
    body = [f"| {row:<{inner}} |" for row in rows]
    return "\n".join([top, *body, top])
