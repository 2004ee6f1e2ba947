"""A local SMTP server (aiosmtpd, a peer no one here wrote) that keeps what it is sent."""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from gateway.web.mailer import Mailer
from tests.ports import free_port


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def link(self, to: str, timeout_s: float = 10.0) -> str:
        """The sign-in link in the newest message to `to`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in reversed(self.messages):
                if message["To"] == to:
                    body = message.get_payload(decode=True)
                    assert isinstance(body, bytes)
                    found = re.search(r"https?://\S+/account/sign-in/[A-Za-z0-9_-]+", body.decode())
                    assert found is not None, body
                    return found.group(0)
            time.sleep(0.05)
        raise AssertionError(f"no message to {to}")


@contextmanager
def mail_sink() -> Iterator[tuple[Sink, Mailer]]:
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, Mailer(host="127.0.0.1", port=port, sender="no-reply@gateway.example")
    finally:
        controller.stop()
