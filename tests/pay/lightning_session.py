"""A session paid up front with Lightning, for the tests of its change and its refunds: the
operator's LNbits wallet as a gateway's processor (account ``op-wallet``, the ``lightning``
method routed to it), reached directly or through a `RecordingProxy` that holds back the
payouts, and a payment made from a payer's own wallet, then captured or voided through the
terminal API as a kiosk would."""

from __future__ import annotations

from pathlib import Path

import requests

from gateway.processors import CardRef
from gateway.processors.methods import LIGHTNING
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import capture
from tests.processors.conftest import processors_file
from tests.processors.stack import Lnbits

ACCOUNT = "op-wallet"
ROUTE = f'[[routes]]\nprocessor = "lightning"\naccount = "{ACCOUNT}"\nmethod = "lightning"\n'


def operator_table(
    tmp_path: Path, peer: Lnbits, name: str, *, url: str = "", more: str = ""
) -> str:
    """The ``[[processors]]`` table of a new operator wallet `name` on `peer`, its keys in
    files under `tmp_path`, LNbits reached at `url` (the peer's own when empty); `more` adds
    the table's other settings, one ``key = value`` a line."""
    operator = peer.wallet(name)
    (tmp_path / "invoice.key").write_text(operator.invoice_key + "\n")
    (tmp_path / "admin.key").write_text(operator.admin_key + "\n")
    return f"""
[[processors]]
adapter = "lightning"
account = "{ACCOUNT}"
url = "{url or peer.url}"
invoice_key_file = "{tmp_path / "invoice.key"}"
admin_key_file = "{tmp_path / "admin.key"}"
{more}"""


def lightning_processors(
    tmp_path: Path, peer: Lnbits, name: str, *, url: str = "", timeout_s: float | None = None
) -> Path:
    """A gateway's processors file: the operator wallet `name` (`operator_table`) takes the
    ``lightning`` method, with the adapter's `timeout_s` when given."""
    more = f"timeout_s = {timeout_s}\n" if timeout_s is not None else ""
    return processors_file(
        tmp_path, operator_table(tmp_path, peer, name, url=url, more=more), ROUTE
    )


def is_payout(method: str, path: str, body: bytes) -> bool:
    """The gateway paying out: LNbits's outgoing payment."""
    return method == "POST" and path == "/api/v1/payments" and b'"out": true' in body


def prepaid(gateway: EmbeddedGateway, peer: Lnbits, aid: str, *, hold: int, captured: int) -> None:
    """A session paid up front with Lightning for `hold` (minor EUR) on `gateway`, then
    captured for `captured` through the terminal API, or voided when it is 0."""
    payer = peer.wallet(f"payer-{aid}", sats=1_000_000)
    wallet = CardRef(kind=LIGHTNING, token="", brand="", last4="", expiry=None, payload={})
    asked = {"authorization_id": aid, "terminal_id": "KIOSK-0001", "card": wallet}
    pending = gateway.payments.hold_web(**asked, amount=Money(hold, "EUR"))
    peer.pay(payer, pending.pay["bolt11"])
    again = gateway.payments.hold_web(**asked, amount=Money(hold, "EUR"))
    assert again.answer.body["status"] == "approved", again.answer.body
    if captured:
        path, body = "capture", capture(captured)
    else:
        path, body = "void", {"reason": "not_started"}
    done = requests.post(
        f"{gateway.url}/v1/authorizations/{aid}/{path}",
        json=body,
        headers={"Idempotency-Key": f"{aid}-{path}"},
        timeout=30,
    )
    assert done.status_code == 200, done.text
