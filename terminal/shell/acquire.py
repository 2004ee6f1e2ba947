"""Card acquisition, in the reader thread: the kernel reads the card, the protection module
turns it into a token, masked PAN and encrypted blob. Clear card data exists only inside this
call (in the kernel's `CardData` and the protection module) and is dropped before it returns.

A tap while no session could start from it (a session runs: the tap stops it or is another
card; or the kiosk is out of service) gets the token and no blob, so it uses no DUKPT key.
A key problem (registers missing or damaged, counter exhausted, state that cannot be saved)
is raised as KeyMaterialError for the daemon to turn into a device fault: it is no "card not
accepted".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from zoneinfo import ZoneInfo

from hardware.clock import Clock
from hardware.ports import CardTarget, ReaderFault
from terminal.card.card_data import Outcome
from terminal.card.kernel import run_kernel
from terminal.card.terminal_data import TerminalData
from terminal.core.events import CardProblem
from terminal.core.session import Card, CardKind
from terminal.errors import CardError, KeyMaterialError
from terminal.money import NUMERIC_CODES, minor_exponent
from terminal.protection.module import ProtectionModule

log = logging.getLogger("ev_terminal.reader")

# ISO 3166-1 numeric country code by station time zone region is not reliable; the country is
# configured with the currency. Default: Germany (276), the reference deployment.
DEFAULT_COUNTRY = 276

_PROBLEMS = {
    Outcome.TAP_AGAIN: CardProblem.TAP_AGAIN,
    Outcome.NOT_ACCEPTED: CardProblem.NOT_ACCEPTED,
    Outcome.DECLINED: CardProblem.NOT_ACCEPTED,
    Outcome.EXPIRED: CardProblem.EXPIRED,
}


class CardAcquirer:
    """Callable: a card target in, a protected `Card` (or the problem) out."""

    def __init__(
        self,
        *,
        protection: ProtectionModule | None,
        clock: Clock,
        currency: str,
        amount_minor: int,
        timezone: str,
        country: int = DEFAULT_COUNTRY,
        random_bytes: Callable[[int], bytes] = os.urandom,
        key_problem: str | None = None,
    ) -> None:
        self.protection = protection
        # Why there is no protection module (its keys failed to load): a device fault.
        self.key_problem = key_problem
        self.clock = clock
        self.currency = currency
        self.amount_minor = amount_minor
        self.tz = ZoneInfo(timezone)
        self.country = country
        self.random_bytes = random_bytes

    def __call__(self, target: object, protect: bool = True) -> Card | CardProblem:
        """Read a card; with `protect`, encrypt its data for an authorization (else the token
        alone). KeyMaterialError: the device cannot protect cards."""
        assert isinstance(target, CardTarget)
        protection = self.protection
        if protection is None:
            raise KeyMaterialError(self.key_problem or "the device keys are not loaded")
        if not target.iso_dep:
            # MIFARE / NTAG identification token: its UID is the identity (ISO 14443-3).
            return Card(
                kind=CardKind.ID_TOKEN,
                token=protection.rfid_token(target.uid),
                brand="RFID",
                last4="",
            )
        local = self.clock.now().astimezone(self.tz)
        terminal = TerminalData(
            amount_authorized=self.amount_minor,
            currency_code=NUMERIC_CODES[self.currency],
            currency_exponent=minor_exponent(self.currency),
            country_code=self.country,
            transaction_date=local.date(),
            transaction_time=local.time().replace(microsecond=0, tzinfo=None),
            unpredictable_number=self.random_bytes(4),
        )
        try:
            result = run_kernel(target.transceive, terminal)
        except ReaderFault:
            raise
        except CardError as exc:
            log.info("event=card_unreadable reason=%s", type(exc).__name__)
            return CardProblem.TAP_AGAIN
        if result.outcome is not Outcome.APPROVED_FOR_ONLINE or result.card is None:
            log.info("event=card_refused outcome=%s reason=%s", result.outcome.value, result.reason)
            return _PROBLEMS.get(result.outcome, CardProblem.NOT_ACCEPTED)
        data = result.card
        try:
            token = protection.card_token(data.pan)
        except CardError:
            return CardProblem.TAP_AGAIN
        if not protect:
            # A stop tap or a tap that starts nothing: the token is all the machine compares.
            stop = Card(
                kind=CardKind.PAYMENT,
                token=token,
                brand=data.brand,
                last4=data.last4,
                expiry=data.expiry.strftime("%y%m"),
            )
            del data, result
            return stop
        try:
            protected = protection.protect(
                pan=data.pan,
                expiry=data.expiry.strftime("%y%m"),
                pan_sequence=(
                    f"{data.pan_sequence_number:02d}"
                    if data.pan_sequence_number is not None
                    else None
                ),
                track2=data.track2,
                emv_data=data.online_data,
                brand=data.brand,
            )
        except CardError:
            return CardProblem.TAP_AGAIN
        del data, result
        blob = protected.blob.to_json()
        return Card(
            kind=CardKind.PAYMENT,
            token=protected.token,
            brand=protected.brand,
            last4=protected.last4,
            expiry=f"{protected.expiry_year % 100:02d}{protected.expiry_month:02d}",
            payload=tuple(sorted(blob.items())),
        )
