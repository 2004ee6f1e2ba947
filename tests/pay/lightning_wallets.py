"""A driver's own Lightning wallet for the change tests: invoices from a second LNbits wallet
on the same instance (so paying them is an internal payment, which FakeWallet settles), its
balance, and invoices LNbits would never make (another network) encoded with the `bolt11`
library of LNbits's own virtual environment."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass

import requests

from tests.processors import install
from tests.processors.stack import Lnbits, Wallet

_ENCODE = """
import hashlib, os, sys, time
from bolt11 import Bolt11, MilliSatoshi, Tags, TagChar, encode
currency, sats = sys.argv[1], int(sys.argv[2])
tags = Tags()
tags.add(TagChar.description, "change")
tags.add(TagChar.payment_secret, os.urandom(32).hex())
tags.add(TagChar.payment_hash, hashlib.sha256(os.urandom(32)).hexdigest())
invoice = Bolt11(currency=currency, amount_msat=MilliSatoshi(sats * 1000),
                 date=int(time.time()), tags=tags)
print(encode(invoice, sys.argv[3]))
"""


@dataclass(frozen=True)
class DriverWallet:
    lnbits: Lnbits
    wallet: Wallet

    def invoice(self, sats: int, *, expiry_s: int = 3600) -> str:
        made = requests.post(
            f"{self.lnbits.url}/api/v1/payments",
            json={"out": False, "amount": sats, "memo": "my change", "expiry": expiry_s},
            headers={"X-Api-Key": self.wallet.invoice_key},
            timeout=10,
        )
        made.raise_for_status()
        return str(made.json()["bolt11"])

    def balance_msat(self) -> int:
        got = requests.get(
            f"{self.lnbits.url}/api/v1/wallet",
            headers={"X-Api-Key": self.wallet.invoice_key},
            timeout=10,
        )
        got.raise_for_status()
        return int(got.json()["balance"])

    def received(self) -> list[dict[str, object]]:
        """The wallet's incoming payments that were paid."""
        got = requests.get(
            f"{self.lnbits.url}/api/v1/payments",
            headers={"X-Api-Key": self.wallet.invoice_key},
            timeout=10,
        )
        got.raise_for_status()
        return [p for p in got.json() if p["amount"] > 0 and p["status"] == "success"]


def driver_wallet(peer: Lnbits, name: str = "change-driver") -> DriverWallet:
    return DriverWallet(peer, peer.wallet(name))


def foreign_invoice(currency: str, sats: int) -> str:
    """A well-formed, signed BOLT 11 invoice on `currency`'s network (``tb``: testnet)."""
    python = install.lnbits().parent / "python"
    key = hashlib.sha256(os.urandom(16)).hexdigest()
    done = subprocess.run(
        [str(python), "-c", _ENCODE, currency, str(sats), key],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()
