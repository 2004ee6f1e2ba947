"""Asking the gateway for a receipt's link code (`POST /v1/link-codes`).

When the receipt of a session paid by a tapped card or RFID token is shown, the machine asks
(`RequestLinkCode`); the executor hands the session id here, and the sender thread sends the
request on its next round (`send_due`), after the outbox rows due then (so the session's
authorization reaches the gateway first). The answer becomes `LinkCodeIssued`, and the
receipt shows the code; the driver types it on the portal to link the card to an account.

The code is a secret for its few minutes: it is kept only in the event and the screen, never
in the journal (the request does not go through the outbox, and the answer is not stored)
nor in a log line. The request is sent once: without an answer the receipt shows no code (a
retry under a new key would replace a code the driver may already be reading; the gateway
never sends the same code twice).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable

from hardware.clock import Clock
from terminal.core.events import Event, LinkCodeIssued
from terminal.errors import GatewayRefused, UplinkError
from terminal.shell.gateway_client import GatewayClient

log = logging.getLogger(__name__)

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")  # the contract's LinkCodeAnswer.code
MAX_VALID_MS = 60 * 60_000  # a longer lifetime is not the gateway's answer: malformed


class LinkCodeAsker:
    """One pending request at a time: the newest receipt's (an older one's screen is gone)."""

    def __init__(
        self,
        client: GatewayClient,
        clock: Clock,
        post: Callable[[Event], None],
        *,
        terminal_id: str,
    ) -> None:
        self.client = client
        self.clock = clock
        self.post = post
        self.terminal_id = terminal_id
        self._lock = threading.Lock()
        self._pending: str | None = None

    def want(self, session_id: str) -> None:
        """Ask for a code for `session_id` at the sender's next round (any thread)."""
        with self._lock:
            self._pending = session_id

    def send_due(self) -> bool:
        """Send the pending request, if any (the sender thread). Whether a code came."""
        with self._lock:
            session_id, self._pending = self._pending, None
        if session_id is None or not self.terminal_id:
            return False
        body = {"terminal_id": self.terminal_id, "authorization_id": session_id}
        try:
            data = self.client.post("/v1/link-codes", f"link-code-{uuid.uuid4().hex}", body)
        except UplinkError as exc:
            log.info("event=link_code_unanswered session=%s error=%s", session_id, exc)
            return False
        except GatewayRefused as refusal:
            log.info("event=link_code_refused session=%s code=%s", session_id, refusal.code)
            return False
        code, valid = data.get("code"), data.get("expires_in_ms")
        if (
            not isinstance(code, str)
            or not CODE.match(code)
            or not isinstance(valid, int)
            or isinstance(valid, bool)
            or not 0 < valid <= MAX_VALID_MS
        ):
            log.warning("event=link_code_malformed session=%s", session_id)
            return False
        log.info("event=link_code_shown session=%s valid_ms=%d", session_id, valid)
        self.post(
            LinkCodeIssued(
                session_id=session_id,
                code=code,
                valid_ms=valid,
                at_ms=self.clock.monotonic_ms(),
                at=self.clock.now(),
            )
        )
        return True
