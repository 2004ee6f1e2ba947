"""The applications (AIDs) this terminal accepts, and how PPSE entries are matched to them.

AIDs are registered by ISO/IEC 7816-5 (RID = first 5 bytes, then the PIX) and published by
each payment system; kernel identifiers are those of EMV Book B, table 3-6 (2 Mastercard,
3 Visa, 4 American Express, 5 JCB, 6 Discover, 7 UnionPay); domestic schemes run on their
own kernels and are marked 0 here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class AidEntry:
    """A terminal-supported application.

    `partial` allows partial name selection (EMV Book B 3.3.2.5; Book 1 12.3.1): a card's
    ADF name that *begins* with `aid` (an issuer-specific suffix) still matches."""

    aid: bytes
    brand: str
    kernel_id: int
    partial: bool = True

    def matches(self, adf_name: bytes) -> bool:
        """Whether the card's ADF name (tag 4F) selects this entry."""
        if adf_name == self.aid:
            return True
        return self.partial and adf_name.startswith(self.aid) and len(adf_name) <= 16


DEFAULT_AIDS: tuple[AidEntry, ...] = (
    AidEntry(aid=bytes.fromhex("A0000000031010"), brand="Visa", kernel_id=3),
    AidEntry(aid=bytes.fromhex("A0000000032010"), brand="Visa Electron", kernel_id=3),
    AidEntry(aid=bytes.fromhex("A0000000032020"), brand="V Pay", kernel_id=3),
    AidEntry(aid=bytes.fromhex("A0000000041010"), brand="Mastercard", kernel_id=2),
    AidEntry(aid=bytes.fromhex("A0000000043060"), brand="Maestro", kernel_id=2),
    AidEntry(aid=bytes.fromhex("A00000002501"), brand="American Express", kernel_id=4),
    AidEntry(aid=bytes.fromhex("A0000001523010"), brand="Discover", kernel_id=6),
    AidEntry(aid=bytes.fromhex("A0000000651010"), brand="JCB", kernel_id=5),
    AidEntry(aid=bytes.fromhex("A000000333010101"), brand="UnionPay", kernel_id=7),
    AidEntry(aid=bytes.fromhex("A000000333010102"), brand="UnionPay", kernel_id=7),
    # girocard (Deutsche Kreditwirtschaft), the German domestic debit scheme.
    AidEntry(aid=bytes.fromhex("A0000003591010028001"), brand="girocard", kernel_id=0),
    # Cartes Bancaires, the French domestic scheme, co-badged with Visa or Mastercard.
    AidEntry(aid=bytes.fromhex("A0000000421010"), brand="Cartes Bancaires", kernel_id=0),
)


def lookup(adf_name: bytes, supported: tuple[AidEntry, ...] = DEFAULT_AIDS) -> AidEntry | None:
    """The most specific supported entry the ADF name matches, or None (EMV Book B 3.3.2.5).

    The longest matching AID wins, so an exact entry beats a shorter partial one."""
    best: AidEntry | None = None
    for entry in supported:
        if entry.matches(adf_name) and (best is None or len(entry.aid) > len(best.aid)):
            best = entry
    return best
