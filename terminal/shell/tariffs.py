"""The tariffs the kiosk prices by: the config file's, and the ones the gateway sends.

The operator assigns an OCPI 2.2.1 tariff to a station in the gateway's console; the kiosk
receives it in `GET /v1/terminal-config` (polled with `If-None-Match`, beside the token lists:
`local_lists.py`). A received tariff is checked (the kiosk's own OCPI parser, the station's
currency), journaled, and only then posted to the machine as `TariffChanged`, so the idle
screen shows its price before the next session and a restart without the gateway keeps it.
A document without a tariff means the assignment was removed: back to the config file's.

Each session records the key of the tariff it started with (the `sessions.tariff_key`
column): it is priced by that tariff to the end, also when it is settled after a restart,
whatever the kiosk received meanwhile. A key is the SHA-256 of the document's canonical JSON,
so the same document received again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime, tzinfo
from typing import Any

from terminal.core.billing import Tariff
from terminal.shell.journal import Journal
from terminal.tariff import OcpiTariff

log = logging.getLogger("ev_terminal.tariffs")


class TariffRefused(ValueError):
    """A tariff from the gateway that the kiosk cannot price by (the message says why)."""


def tariff_key(document: dict[str, Any]) -> str:
    """The journal's key of a received tariff: the SHA-256 of its canonical JSON."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TariffBook:
    """The configured tariff, the received ones (journaled) and which one is current.

    `current` is read by the daemon's thread at start and by the command channel's (the
    pay-by-phone offer); `receive` runs on the sender's thread. A lock guards the current
    pair; the journal is used on the calling thread's own connection."""

    def __init__(self, journal: Journal, *, configured: Tariff, tz: tzinfo, currency: str) -> None:
        self.journal = journal
        self.configured = configured
        self.tz = tz
        self.currency = currency
        self._lock = threading.Lock()
        self._known: dict[str, Tariff] = {}
        row = journal.execute("SELECT tariff_key FROM tariff_current WHERE one = 1").fetchone()
        key = row[0] if row is not None else None
        self._current: tuple[str | None, Tariff] = (key, self.get(key))
        if key is not None and self._current[1] is configured:
            self._current = (None, configured)  # its document is unreadable: logged by get

    def current(self) -> tuple[str | None, Tariff]:
        """(key, tariff) new sessions are priced by; key None: the config file's."""
        with self._lock:
            return self._current

    def get(self, key: str | None) -> Tariff:
        """The tariff journaled under `key` (a session's), the config file's for None. A key
        the journal does not hold (a journal set aside as damaged) or cannot parse is logged
        and priced by the config file's tariff: a session is always settled."""
        if key is None:
            return self.configured
        known = self._known.get(key)
        if known is not None:
            return known
        row = self.journal.execute(
            "SELECT document FROM tariffs WHERE tariff_key = ?", (key,)
        ).fetchone()
        if row is None:
            log.error("event=tariff_missing key=%s", key)
            return self.configured
        try:
            tariff = self._parse(json.loads(row[0]))
        except (ValueError, TariffRefused) as exc:
            log.error("event=tariff_unreadable key=%s error=%s", key, exc)
            return self.configured
        self._known[key] = tariff
        return tariff

    def _parse(self, document: Any) -> Tariff:
        if not isinstance(document, dict):
            raise TariffRefused("the tariff is not a JSON object")
        tariff = OcpiTariff.from_json(json.dumps(document), tz=self.tz)  # TariffError: a field
        if tariff.currency != self.currency:
            raise TariffRefused(
                f"the tariff's currency {tariff.currency} is not the kiosk's {self.currency}"
            )
        return tariff

    def receive(self, document: Any, at: datetime) -> tuple[str | None, Tariff] | None:
        """A terminal-config document's `tariff` (None: none assigned). Journaled when it
        differs from the current one; returns the new (key, tariff) for the machine, or None
        when nothing changed or the tariff is refused (logged; the kiosk keeps its tariff)."""
        if document is None:
            key: str | None = None
            tariff = self.configured
        else:
            try:
                tariff = self._parse(document)
            except (ValueError, TariffRefused) as exc:
                log.error("event=tariff_refused error=%s", exc)
                return None
            key = tariff_key(document)
        with self._lock:
            if key == self._current[0]:
                return None
        with self.journal.atomic():
            if key is not None:
                self.journal.execute(
                    "INSERT OR IGNORE INTO tariffs (tariff_key, document, received_at)"
                    " VALUES (?,?,?)",
                    (key, json.dumps(document, sort_keys=True), at.isoformat()),
                )
            self.journal.execute(
                "INSERT INTO tariff_current (one, tariff_key, changed_at) VALUES (1,?,?)"
                " ON CONFLICT(one) DO UPDATE SET tariff_key=excluded.tariff_key,"
                " changed_at=excluded.changed_at",
                (key, at.isoformat()),
            )
        if key is not None:
            self._known[key] = tariff
        with self._lock:
            self._current = (key, tariff)
        log.info("event=tariff_received key=%s name=%s", key, tariff.name)
        return key, tariff
