"""What the terminal tells the card: amount, currency, date, capabilities (EMV Book 4 Annex A,
Book 3 Annex A1, Book A 5). The shell supplies date and unpredictable number; the kernel
reads no clock and draws no random numbers.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from terminal.card.aids import DEFAULT_AIDS, AidEntry

# Terminal Type 9F35 (Book 4 Annex A1, table 24): tens digit who operates the terminal (2 =
# merchant, here the charge point operator), units digit the environment (4 = unattended,
# online only). An EV charger kiosk is unattended and authorizes online every time: 0x24.
# (0x25 would be "unattended, offline with online capability", which this terminal is not.)
TERMINAL_TYPE_UNATTENDED_ONLINE_ONLY = 0x24

# Terminal Transaction Qualifiers 9F66 (Book A 5.7 / Book C-3 Annex A):
#   byte 1: b6 EMV contactless mode supported (mag-stripe mode b8 not: it is retired);
#           no contact chip (b5), not offline-only (b4), no online PIN (b3: no PIN pad),
#           no signature (b2: unattended), no ODA for online authorizations (b1)  -> 0x20
#   byte 2: b8 online cryptogram required (every tap goes online)              -> 0x80
#   byte 3: b7 consumer device CVM supported (phones verify the holder)        -> 0x40
#   byte 4: RFU                                                               -> 0x00
TTQ_ONLINE_ONLY = bytes.fromhex("20804000")

# Terminal Capabilities 9F33 (Book 4 Annex A2): no manual, magstripe or contact input
# (byte 1); CVM: "No CVM required" only (byte 2 b4); no offline data authentication, since
# every transaction is authorized online (byte 3).
TERMINAL_CAPABILITIES = bytes.fromhex("000800")

# Additional Terminal Capabilities 9F40 (Book 4 Annex A3): goods and services (byte 1 b7-b6),
# display for the cardholder (byte 4 b5).
ADDITIONAL_CAPABILITIES = bytes.fromhex("6000001000")

# Merchant Category Code 9F15 (ISO 18245): 5552 Electric Vehicle Charging.
MCC_EV_CHARGING = 5552

# Transaction Type 9C (ISO 8583:1987 processing code positions 1-2): 00 goods and services.
TRANSACTION_TYPE_PURCHASE = 0x00

# CVM Results 9F34 (Book 4 Annex A4): 1F "No CVM required", condition 00 "always",
# result 02 "successful". An unattended kiosk has neither PIN pad nor signature.
CVM_RESULTS_NO_CVM = bytes.fromhex("1F0002")

# Application Version Number (terminal) 9F09, as the schemes' contactless specifications
# publish it (Book C-2 0002; C-3 0096 is reported by the card).
TERMINAL_APPLICATION_VERSION = bytes.fromhex("0002")


def bcd(number: int, length: int) -> bytes:
    """`number` as `length` bytes of packed BCD (EMV format n), right-aligned."""
    digits = str(number).rjust(length * 2, "0")
    if len(digits) > length * 2 or number < 0:
        raise ValueError(f"{number} does not fit n{length * 2}")
    return bytes.fromhex(digits)


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalData:
    """The transaction and terminal data objects the card may ask for in its PDOL/CDOL."""

    amount_authorized: int  # 9F02, minor units of the currency
    currency_code: int  # 5F2A, ISO 4217 numeric (978 EUR)
    currency_exponent: int = 2  # 5F36
    country_code: int  # 9F1A, ISO 3166-1 numeric (276 Germany)
    transaction_date: datetime.date  # 9A, station local date
    transaction_time: datetime.time = datetime.time(0, 0)  # 9F21, station local time
    unpredictable_number: bytes  # 9F37, 4 bytes from the shell's CSPRNG
    transaction_type: int = TRANSACTION_TYPE_PURCHASE
    terminal_type: int = TERMINAL_TYPE_UNATTENDED_ONLINE_ONLY
    ttq: bytes = TTQ_ONLINE_ONLY
    terminal_capabilities: bytes = TERMINAL_CAPABILITIES
    additional_capabilities: bytes = ADDITIONAL_CAPABILITIES
    merchant_category_code: int = MCC_EV_CHARGING
    supported_aids: tuple[AidEntry, ...] = field(default=DEFAULT_AIDS)

    def __post_init__(self) -> None:
        if len(self.unpredictable_number) != 4:
            raise ValueError("unpredictable_number must be 4 bytes (9F37)")
        if not 0 <= self.amount_authorized < 10**12:
            raise ValueError("amount_authorized must fit n12 (9F02)")
        for name in ("currency_code", "country_code"):
            if not 0 <= getattr(self, name) < 1000:
                raise ValueError(f"{name} must be a 3-digit ISO numeric code")
        if len(self.ttq) != 4:
            raise ValueError("ttq must be 4 bytes (9F66)")

    def values(self) -> dict[int, bytes]:
        """The terminal-sourced data objects by tag, encoded as EMV expects them."""
        date = self.transaction_date
        time = self.transaction_time
        return {
            0x9F02: bcd(self.amount_authorized, 6),
            0x9F03: bcd(0, 6),  # Amount, Other: no cashback
            0x5F2A: bcd(self.currency_code, 2),
            0x5F36: bcd(self.currency_exponent, 1),
            0x9F1A: bcd(self.country_code, 2),
            0x9A: bcd(date.year % 100 * 10000 + date.month * 100 + date.day, 3),
            0x9F21: bcd(time.hour * 10000 + time.minute * 100 + time.second, 3),
            0x9C: bytes((self.transaction_type,)),  # already BCD (n2)
            0x9F37: bytes(self.unpredictable_number),
            0x9F35: bytes((self.terminal_type,)),  # already BCD (n2)
            0x9F66: bytes(self.ttq),
            0x9F33: bytes(self.terminal_capabilities),
            0x9F40: bytes(self.additional_capabilities),
            0x9F15: bcd(self.merchant_category_code, 2),
            0x9F34: CVM_RESULTS_NO_CVM,
            0x9F09: TERMINAL_APPLICATION_VERSION,
        }
