"""The change of a Lightning prepayment: the rules for the payer's invoice that receives it.

A Lightning payment is made in full up front (the hold amount); after the session the payer
is owed what was not captured. It is paid back to an invoice from the payer's own wallet
(BOLT 11), checked here before any money moves:
- it decodes (LNbits's ``POST /api/v1/payments/decode``) and is on the network of the invoice
  the payer paid (the BOLT 11 human-readable prefix: ``lnbc`` mainnet, ``lntb`` testnet,
  ``lnbcrt`` regtest, ``lntbs`` signet);
- it has not expired, and will not within `EXPIRY_MARGIN_S` (its ``timestamp`` plus its
  ``x`` expiry field, BOLT 11 "Tagged Fields"; LNbits pays an expired internal invoice, so
  the gateway must check);
- it is for exactly the change in satoshis: the satoshis paid less what the capture is worth
  at the rate recorded when the payment was made, rounded up for the operator as the
  invoice was (`change_sats`), so the payer gets back every satoshi the capture did not take;
- it is not paid already (asked of LNbits, which knows the invoices of its own wallets; for
  another node's invoice, that node refuses a second payment itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from typing import Any

from gateway.processors.port import ChangeRefused
from terminal.money import Money

SATS_PER_BTC = 100_000_000
EXPIRY_MARGIN_S = 60  # time left for the payment to reach the payer's wallet
MAX_INVOICE = 2000  # characters: a BOLT 11 invoice with route hints stays well under this
# BOLT 11: "ln" + the network's BIP-173 prefix, then the amount, which starts with a digit.
_HRP = re.compile(r"ln(bcrt|tbs|bc|tb|sb)(?=\d|1)")
NETWORKS = {"bc": "bitcoin mainnet", "tb": "testnet", "bcrt": "regtest", "tbs": "signet"}


def clean(destination: str) -> str:
    """The invoice as wallets give it: a ``lightning:`` URI or the bare invoice, any case,
    with spaces or line breaks from copying; raises `ChangeRefused` for anything else."""
    text = "".join(destination.split())
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    text = text.lower()
    if not text or len(text) > MAX_INVOICE or not text.isascii() or not text.startswith("ln"):
        raise ChangeRefused("not_an_invoice", "this is not a Lightning invoice (BOLT 11)")
    return text


def sats_for(amount: Money, btc_price: Decimal) -> int:
    """Satoshis that buy `amount` at `btc_price`, rounded up to a whole satoshi."""
    sats = amount.to_decimal() * SATS_PER_BTC / btc_price
    return int(sats.to_integral_value(rounding=ROUND_UP))


def network_of(bolt11: str) -> str:
    """The network prefix of a BOLT 11 invoice (``bc``, ``tb``, ``bcrt``, ``tbs``), or ""."""
    found = _HRP.match(bolt11.lower())
    return found[1] if found else ""


def change_sats(paid_msat: int, captured: Money, btc_price: Decimal) -> int:
    """Satoshis owed back on an invoice paid with `paid_msat`, of which `captured` was kept:
    the capture is worth its fiat amount at the payment's rate rounded up to a whole satoshi
    (as the invoice itself was), so the operator keeps no less than the capture and the payer
    gets every other satoshi."""
    paid = paid_msat // 1000
    kept = sats_for(captured, btc_price) if captured.minor else 0
    return max(paid - kept, 0)


def check_invoice(
    decoded: Mapping[str, Any], *, network: str, sats: int, owed: Money, now: datetime
) -> str:
    """The payment hash of a decoded invoice fit to receive `sats`; else `ChangeRefused`."""
    theirs = str(decoded.get("currency") or "")
    if theirs != network:
        raise ChangeRefused(
            "wrong_network",
            f"this invoice is for {NETWORKS.get(theirs, theirs or 'an unknown network')}; "
            f"the change is paid on {NETWORKS.get(network, network)}",
        )
    try:
        expires = datetime.fromtimestamp(int(decoded["date"]), UTC) + timedelta(
            seconds=int(decoded.get("expiry") or 3600)  # BOLT 11: 3600 s when absent
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ChangeRefused("not_an_invoice", "this invoice carries no valid date") from None
    if expires <= now + timedelta(seconds=EXPIRY_MARGIN_S):
        raise ChangeRefused(
            "expired", "this invoice has expired (or is about to): make a new one in your wallet"
        )
    msat = int(decoded.get("amount_msat") or 0)
    if msat != sats * 1000:
        got = "no amount" if not msat else f"{msat / 1000:g} sat"
        raise ChangeRefused(
            "wrong_amount",
            f"the invoice must be for exactly {sats} sat (your change, {owed.format()}); "
            f"this one asks {got}",
        )
    payment_hash = str(decoded.get("payment_hash") or "")
    if not re.fullmatch(r"[0-9a-f]{64}", payment_hash):
        raise ChangeRefused("not_an_invoice", "this invoice carries no payment hash")
    return payment_hash
