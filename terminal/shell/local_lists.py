"""The local authorization list and the deny list: card tokens the kiosk may decide on when
the gateway does not answer (README, "Offline policy").

The lists come from the gateway (`GET /v1/terminal-config`, polled with `If-None-Match`, so an
unchanged list costs a 304) or, for a kiosk without that endpoint, from a file the operator
installs (`[offline] list_file`). Either way they are JSON::

    {"authorization_list": ["<token>", ...], "deny_list": ["<token>", ...]}

The last synced copy is kept in the data dir (written atomically), so the kiosk knows its
lists after a restart while the gateway is still unreachable. The lists hold tokens (keyed
hashes of card identifiers), never card data.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.core.session import Card, LocalStanding
from terminal.shell.journal import Journal

log = logging.getLogger("ev_terminal.lists")

SYNCED_FILE = "terminal-config.json"


class ListsError(ValueError):
    """A list document that is not the documented shape."""


def parse_lists(data: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(authorization list, deny list) from a list document; ListsError if malformed."""
    if not isinstance(data, dict):
        raise ListsError("not a JSON object")
    lists = []
    for name in ("authorization_list", "deny_list"):
        items = data.get(name, [])
        if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
            raise ListsError(f"{name} must be a list of tokens")
        lists.append(frozenset(items))
    return lists[0], lists[1]


class LocalLists:
    """The current lists (shared by the sender thread, which syncs, and the daemon thread,
    which reads them at each tap) and the offline book from the journal."""

    def __init__(self, data_dir: Path, list_file: Path | None = None) -> None:
        self.synced_path = data_dir / SYNCED_FILE
        self.list_file = list_file
        self._lock = threading.Lock()
        self.allow: frozenset[str] = frozenset()
        self.deny: frozenset[str] = frozenset()
        self.etag: str | None = None
        source = list_file if list_file is not None else self.synced_path
        if source.exists():
            try:
                doc = json.loads(source.read_text(encoding="utf-8"))
                self.allow, self.deny = parse_lists(doc)
                self.etag = doc.get("etag") if source == self.synced_path else None
            except (OSError, ValueError) as exc:
                log.error("event=lists_unreadable file=%s error=%s", source, exc)

    def standing(self, card: Card, journal: Journal) -> LocalStanding:
        """What the machine needs to decide on this card if the gateway does not answer."""
        outstanding, count, oldest = journal.offline_book()
        with self._lock:
            listed, denied = card.token in self.allow, card.token in self.deny
        return LocalStanding(
            listed=listed,
            denied=denied,
            outstanding_minor=outstanding,
            outstanding_count=count,
            oldest_outstanding=oldest,
        )

    def apply(self, data: dict[str, Any], etag: str | None, at: datetime) -> None:
        """Take lists synced from the gateway (ignored when a list file is configured: the
        operator chose the file) and keep a copy for restarts."""
        allow, deny = parse_lists(data)
        if self.list_file is not None:
            return
        with self._lock:
            self.allow, self.deny, self.etag = allow, deny, etag
        doc = {
            "authorization_list": sorted(allow),
            "deny_list": sorted(deny),
            "etag": etag,
            "synced_at": at.isoformat(),
        }
        tmp = self.synced_path.with_name(f".{self.synced_path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.synced_path)
        log.info("event=lists_synced allow=%d deny=%d", len(allow), len(deny))
