"""The last log lines, kept in memory for the console's `log` command.

A `logging.Handler` on the root logger with a bounded deque: the newest `capacity` lines, each
formatted like the journald lines (one event a line, key=value) with a UTC time in front.
Nothing is written to disk here; journald keeps the full log. Log lines never carry card data
or secrets (docs/architecture.md, Conventions), so the console may show them.
"""

from __future__ import annotations

import logging
import time
from collections import deque

DEFAULT_CAPACITY = 500


class RecentLog(logging.Handler):
    def __init__(self, capacity: int = DEFAULT_CAPACITY, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: deque[str] = deque(maxlen=capacity)
        formatter = logging.Formatter(
            "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%SZ",
        )
        formatter.converter = time.gmtime
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a bad log call must not take the caller down
            self.handleError(record)
            return
        if "\n" in line:  # one line each: a traceback is cut to its last line (the exception)
            parts = line.splitlines()
            line = f"{parts[0]} | {parts[-1]}"
        self._lines.append(line)

    def lines(self, count: int) -> list[str]:
        """The newest `count` lines, oldest first."""
        self.acquire()  # emit runs under the handler's lock; a deque must not change mid-copy
        try:
            snapshot = list(self._lines)
        finally:
            self.release()
        return snapshot[-count:] if count > 0 else []

    @property
    def capacity(self) -> int:
        return self._lines.maxlen or 0
