"""The ISO/IEC 14443-4 ATS as nfcpy reads it: every interface byte present.

An ATS (ISO/IEC 14443-4 5.2) is TL, then optionally T0, TA, TB, TC and historical bytes; T0's
bits 5-7 say which of TA, TB, TC are there, and an absent one takes its default (TA 00h: 106
kbit/s only; TB 40h: FWI 4, SFGI 0; TC 02h: CID supported, no NAD; with no T0, FSCI 2). Cards
send all the forms. nfcpy 1.0.4 (nfc/tag/tt4.py, `Type4ATag.__init__`) reads ATS[1] as T0 and
ATS[3] as TB whatever T0 says, so a card without TA gets a wrong frame waiting time, and one
without TB fails to activate (IndexError). `ats_completed(clf)` hands nfcpy the same ATS with
the absent bytes filled in with their defaults, so it reads what the card meant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

RATS = 0xE0
TA_DEFAULT, TB_DEFAULT, TC_DEFAULT = 0x00, 0x40, 0x02
FSCI_DEFAULT = 0x02


def complete_ats(ats: bytes) -> bytes:
    """`ats` with T0, TA, TB and TC all present (absent ones at their defaults); an ATS whose
    TL or T0 does not fit its length is returned as it came (nfcpy then refuses it)."""
    if not ats or ats[0] != len(ats):
        return ats
    t0 = ats[1] if len(ats) > 1 else FSCI_DEFAULT
    interface = [TA_DEFAULT, TB_DEFAULT, TC_DEFAULT]
    at = 2
    for index, bit in enumerate((0x10, 0x20, 0x40)):
        if len(ats) > 1 and t0 & bit:
            if at >= len(ats):
                return ats
            interface[index] = ats[at]
            at += 1
    body = bytes([0x70 | (t0 & 0x0F), *interface]) + ats[at:]
    return bytes([len(body) + 1]) + body


@contextlib.contextmanager
def ats_completed(clf: Any) -> Iterator[None]:
    """While nfcpy activates a Type 4A card through `clf` (an nfc.ContactlessFrontend), its
    answer to RATS reaches nfcpy completed."""
    exchange = clf.exchange

    def completing(send_data: bytearray, timeout: float) -> bytearray:
        answer = exchange(send_data, timeout)
        if len(send_data) == 2 and send_data[0] == RATS and answer is not None:
            return bytearray(complete_ats(bytes(answer)))
        return answer  # type: ignore[no-any-return]

    clf.exchange = completing
    try:
        yield
    finally:
        del clf.exchange  # the instance attribute goes; the class's method shows again
