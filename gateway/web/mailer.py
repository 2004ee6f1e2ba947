"""Sending the driver's sign-in link by e-mail (SMTP, stdlib `smtplib`). The gateway talks to
the operator's mail relay (`--smtp HOST:PORT`, `--mail-from`); tests run a local `aiosmtpd`
sink. A message holds the link and nothing else about the driver."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

SMTP_TIMEOUT_S = 10.0


class MailNotSent(Exception):
    """The relay refused the message or could not be reached."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailer:
    host: str
    port: int
    sender: str

    def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailNotSent(f"{type(exc).__name__}: {exc}") from None
