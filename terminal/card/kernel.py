"""The EMV contactless kernel: read a payment card for online authorization.

One run, over a `transceive` callable and the `TerminalData` the shell gives it:

1. SELECT PPSE (``2PAY.SYS.DDF01``) and build the candidate list from its directory: the
   entries (61) whose ADF name (4F) matches a supported AID, ordered by Application Priority
   Indicator (87, b4-b1; 0 = none, after 1-15), directory order breaking ties
   (EMV Book B 3.3.2).
2. SELECT the first candidate; if the card refuses, drop it and select the next
   (Book B 3.3.3.4).
3. GET PROCESSING OPTIONS with the PDOL (9F38) filled in template 83 (Book 3 10.1). A 6985
   answer drops the application and goes back to step 2 (Book 3 10.1). The answer is format 1
   (80: AIP then AFL) or format 2 (77: AIP 82, AFL 94 and, for Visa qVSDC (Book C-3) and
   others, the cryptogram itself).
4. READ RECORD for every record the AFL (94) names (Book 3 10.2); each is a 70 template
   (SFI 1-10); a data object returned twice is an error (Book 3 10.2, Book C-2 S4).
5. Check the application dates: expired (5F24) or not yet effective (5F25) ends the tap
   (Book 3 10.4.3) - an online-only kiosk would only see the issuer decline it.
6. If the card gave no cryptogram yet (Mastercard M/Chip, Book C-2; American Express,
   girocard), GENERATE AC asking for an ARQC with CDOL1 (8C) filled (Book 3 9.3, 6.5.5).
   No offline data authentication: the terminal is online-only, so ODA is not performed
   (TVR byte 1 b8) and CDA is not requested.
7. ARQC: collect the online authorization data. AAC: declined by the card.

The kernel is pure (no clock, randomness, logging or I/O of its own) and total: card
removal, error status words, malformed TLV, missing mandatory data each end in a
`KernelResult` outcome, never an exception. Only a reader failure (`ReaderFault` other than
`CardGone`) passes through, for the shell to report as a device fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hardware.ports import CardGone
from terminal.card.aids import AidEntry, lookup
from terminal.card.apdu import (
    SW_CONDITIONS_NOT_SATISFIED,
    exchange,
    generate_ac,
    get_processing_options,
    read_record,
    select,
)
from terminal.card.card_data import (
    CardData,
    KernelResult,
    Outcome,
    decode_cn,
    decode_date,
    decode_track2,
    month_end,
)
from terminal.card.dol import check_dol, fill_dol
from terminal.card.terminal_data import TerminalData
from terminal.card.tlv import Tlv, find, find_all, parse, walk
from terminal.errors import ApduError, CardRemoved, TlvError

Transceive = Callable[[bytes], bytes]

PPSE = b"2PAY.SYS.DDF01"  # Book B 3.3.2.2: the Proximity Payment System Environment

# Cryptogram Information Data 9F27 b8-b7 (Book 3 Table 15)
CID_TYPE_MASK = 0xC0
CID_AAC = 0x00
CID_TC = 0x40
CID_ARQC = 0x80
# GENERATE AC reference control parameter P1 (Book 3 Table 12): ARQC, no CDA.
P1_ARQC = 0x80

# Terminal Verification Results 95 (Book 3 Annex C5). At GPO time all zero (Book C-3); after
# reading, byte 1 b8 "offline data authentication was not performed".
TVR_AT_GPO = bytes(5)
TVR_NO_ODA = bytes.fromhex("8000000000")

# The ICC data of the authorization request (ISO 8583 DE 55), in the order acquirers list
# them; PAN (5A) and track 2 (57) are not among them - they travel in CardData fields.
ONLINE_TAGS: tuple[int, ...] = (
    0x9F26,  # Application Cryptogram
    0x9F27,  # Cryptogram Information Data
    0x9F10,  # Issuer Application Data
    0x9F37,  # Unpredictable Number
    0x9F36,  # Application Transaction Counter
    0x95,  # Terminal Verification Results
    0x9A,  # Transaction Date
    0x9C,  # Transaction Type
    0x9F02,  # Amount, Authorised
    0x5F2A,  # Transaction Currency Code
    0x82,  # Application Interchange Profile
    0x9F1A,  # Terminal Country Code
    0x9F03,  # Amount, Other
    0x9F33,  # Terminal Capabilities
    0x9F34,  # CVM Results
    0x9F35,  # Terminal Type
    0x84,  # Dedicated File Name
    0x9F09,  # Application Version Number (terminal)
    0x9F66,  # Terminal Transaction Qualifiers (Book C-3)
    0x9F6C,  # Card Transaction Qualifiers (Book C-3)
    0x9F6E,  # Form Factor Indicator (Book C-3) / Third Party Data
    0x9F7C,  # Customer Exclusive Data
    0x9F19,  # Token Requestor ID (EMV Payment Tokenisation)
    0x9F24,  # Payment Account Reference
)

# Status words after GET PROCESSING OPTIONS that send us back to selection (Book 3 10.1).
_SELECT_NEXT = frozenset({SW_CONDITIONS_NOT_SATISFIED})
# ISO/IEC 7812-1: a PAN has 8 to 19 digits; payment cards in EMV use 12 to 19.
_PAN_DIGITS = range(12, 20)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A PPSE directory entry the terminal supports (Book B 3.3.2.5)."""

    adf_name: bytes
    entry: AidEntry
    priority: int
    order: int
    label: str

    @property
    def sort_key(self) -> tuple[int, int]:
        """Priority 1 first, 15 last, 0 (no priority) after them; then directory order."""
        return (self.priority or 16, self.order)


class _SelectNext:
    """Marker: drop this candidate and select the next one."""


_NEXT = _SelectNext()


def run_kernel(transceive: Transceive, terminal: TerminalData) -> KernelResult:
    """Read the card in the field for online authorization; see the module docstring."""
    run = _Run(transceive, terminal)
    try:
        return run.execute()
    except (CardGone, CardRemoved):
        return KernelResult(
            outcome=Outcome.TAP_AGAIN, brand=run.brand, reason="card left the field"
        )
    except TlvError as err:
        return KernelResult(
            outcome=Outcome.TAP_AGAIN, brand=run.brand, reason=f"malformed card data: {err}"
        )
    except ApduError as err:
        return KernelResult(
            outcome=Outcome.TAP_AGAIN, brand=run.brand, reason=f"malformed card answer: {err}"
        )


def candidates(ppse_fci: Tlv, supported: tuple[AidEntry, ...]) -> tuple[Candidate, ...]:
    """The supported applications of a PPSE answer, in selection order (Book B 3.3.2)."""
    found: list[Candidate] = []
    for order, entry in enumerate(find_all([ppse_fci], 0x61)):
        adf = find(entry.children, 0x4F)
        if adf is None or not 5 <= len(adf.value) <= 16:
            continue  # Book B 3.3.2.5: an entry without a valid ADF name is skipped
        aid = lookup(adf.value, supported)
        if aid is None:
            continue
        priority = find(entry.children, 0x87)
        label = find(entry.children, 0x50)
        found.append(
            Candidate(
                adf_name=adf.value,
                entry=aid,
                priority=priority.value[0] & 0x0F if priority and priority.value else 0,
                order=order,
                label=_text(label.value) if label else "",
            )
        )
    return tuple(sorted(found, key=lambda c: c.sort_key))


def parse_afl(afl: bytes) -> tuple[tuple[int, int], ...] | None:
    """The (SFI, record) pairs an Application File Locator (94) names, in order; None if it
    is malformed (Book 3 10.2: 4 bytes an entry; SFI 1-30; first record >= 1; last >= first;
    records for ODA <= records in the entry)."""
    if len(afl) % 4:
        return None
    out: list[tuple[int, int]] = []
    for i in range(0, len(afl), 4):
        sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first:
            return None
        if oda > last - first + 1:
            return None
        out.extend((sfi, record) for record in range(first, last + 1))
    return tuple(out)


def _text(value: bytes) -> str:
    """An 'ans' text object (50, 9F12): ISO/IEC 8859 common character set, trimmed."""
    return "".join(ch for ch in value.decode("latin-1") if ch.isprintable()).strip()


def _primitives(objects: tuple[Tlv, ...]) -> list[Tlv]:
    return [obj for obj in walk(objects) if not obj.constructed]


class _Run:
    """One kernel run; holds what the card has said so far."""

    def __init__(self, transceive: Transceive, terminal: TerminalData) -> None:
        self.transceive = transceive
        self.terminal = terminal
        self.brand: str | None = None

    def _end(self, outcome: Outcome, reason: str) -> KernelResult:
        return KernelResult(outcome=outcome, brand=self.brand, reason=reason)

    def execute(self) -> KernelResult:
        answer = exchange(self.transceive, select(PPSE))
        if not answer.ok:
            return self._end(
                Outcome.NOT_ACCEPTED, f"SELECT PPSE answered {answer.sw:04X} ({answer.meaning})"
            )
        fci = find(parse(answer.data), 0x6F)
        if fci is None:
            return self._end(Outcome.TAP_AGAIN, "PPSE answer holds no FCI template (6F)")
        ordered = candidates(fci, self.terminal.supported_aids)
        if not ordered:
            return self._end(Outcome.NOT_ACCEPTED, "no supported application on the card")
        for candidate in ordered:
            result = self._application(candidate)
            if not isinstance(result, _SelectNext):
                return result
        return self._end(Outcome.NOT_ACCEPTED, "no application could be selected")

    def _application(self, candidate: Candidate) -> KernelResult | _SelectNext:
        self.brand = candidate.entry.brand
        answer = exchange(self.transceive, select(candidate.adf_name))
        if not answer.ok:
            return _NEXT  # Book B 3.3.3.4: remove the candidate, select the next
        fci = find(parse(answer.data), 0x6F)
        if fci is None:
            return self._end(Outcome.TAP_AGAIN, "SELECT answer holds no FCI template (6F)")
        df_name = find(fci.children, 0x84)
        label = find(fci.children, 0x50)
        pdol = find(fci.children, 0x9F38)
        pdol_entries = check_dol(pdol.value) if pdol else ()
        values = self.terminal.values() | {0x95: TVR_AT_GPO}
        answer = exchange(self.transceive, get_processing_options(fill_dol(pdol_entries, values)))
        if answer.sw in _SELECT_NEXT:
            return _NEXT
        if not answer.ok:
            return self._end(
                Outcome.NOT_ACCEPTED,
                f"GET PROCESSING OPTIONS answered {answer.sw:04X} ({answer.meaning})",
            )
        card = self._gpo_data(answer.data)
        if isinstance(card, KernelResult):
            return card
        records = self._read_records(card)
        if records is not None:
            return records
        return self._finish(
            candidate=candidate,
            card=card,
            df_name=df_name.value if df_name else candidate.adf_name,
            label=_text(label.value) if label else candidate.label,
        )

    def _gpo_data(self, data: bytes) -> dict[int, bytes] | KernelResult:
        objects = parse(data)
        if len(objects) != 1:
            return self._end(Outcome.TAP_AGAIN, "GET PROCESSING OPTIONS answer is not one object")
        template = objects[0]
        if template.tag == 0x80:  # format 1: AIP (2 bytes) then AFL
            if len(template.value) < 2:
                return self._end(Outcome.TAP_AGAIN, "format 1 answer shorter than the AIP")
            return {0x82: template.value[:2], 0x94: template.value[2:]}
        if template.tag != 0x77:
            return self._end(Outcome.TAP_AGAIN, f"GPO answer template {template.tag:X}")
        card: dict[int, bytes] = {}
        duplicate = self._merge(card, _primitives(template.children))
        if duplicate is not None:
            return duplicate
        if 0x82 not in card:
            return self._end(Outcome.NOT_ACCEPTED, "GPO answer lacks the AIP (82)")
        return card

    def _merge(self, card: dict[int, bytes], objects: list[Tlv]) -> KernelResult | None:
        for obj in objects:
            if obj.tag in card:
                return self._end(Outcome.NOT_ACCEPTED, f"card sent tag {obj.tag:X} twice")
            card[obj.tag] = obj.value
        return None

    def _read_records(self, card: dict[int, bytes]) -> KernelResult | None:
        afl = parse_afl(card.get(0x94, b""))
        if afl is None:
            return self._end(Outcome.NOT_ACCEPTED, "Application File Locator (94) is malformed")
        for sfi, record in afl:
            answer = exchange(self.transceive, read_record(sfi, record))
            if not answer.ok:
                return self._end(
                    Outcome.NOT_ACCEPTED,
                    f"READ RECORD SFI {sfi} record {record} answered {answer.sw:04X}"
                    f" ({answer.meaning})",
                )
            objects = parse(answer.data)
            if len(objects) != 1 or objects[0].tag != 0x70:
                if sfi <= 10:  # Book 3 10.2: records in SFI 1-10 are 70 templates
                    return self._end(Outcome.TAP_AGAIN, f"SFI {sfi} record {record} is not a 70")
                continue  # SFI 11-30 hold issuer data outside EMV's coding rules
            duplicate = self._merge(card, _primitives(objects[0].children))
            if duplicate is not None:
                return duplicate
        return None

    def _finish(
        self, *, candidate: Candidate, card: dict[int, bytes], df_name: bytes, label: str
    ) -> KernelResult:
        track2 = decode_track2(card[0x57]) if 0x57 in card else None
        if 0x57 in card and track2 is None:
            return self._end(Outcome.NOT_ACCEPTED, "track 2 equivalent data (57) is malformed")
        pan = decode_cn(card[0x5A]) if 0x5A in card else None
        if 0x5A in card and pan is None:
            return self._end(Outcome.NOT_ACCEPTED, "PAN (5A) is malformed")
        if pan is None and track2 is None:
            return self._end(Outcome.NOT_ACCEPTED, "card gave neither PAN (5A) nor track 2 (57)")
        if pan is not None and track2 is not None and pan != track2.pan:
            return self._end(Outcome.NOT_ACCEPTED, "PAN (5A) and track 2 (57) disagree")
        pan = pan if pan is not None else track2.pan if track2 else ""
        if len(pan) not in _PAN_DIGITS:
            return self._end(Outcome.NOT_ACCEPTED, f"PAN has {len(pan)} digits")
        if 0x5F24 in card:
            expiry = decode_date(card[0x5F24])
        else:
            expiry = month_end(track2.expiry_yymm) if track2 else None
        if expiry is None:
            return self._end(Outcome.NOT_ACCEPTED, "no valid expiration date (5F24)")
        today = self.terminal.transaction_date
        if today > expiry:
            return self._end(Outcome.EXPIRED, "application expired (5F24)")
        effective = decode_date(card[0x5F25]) if 0x5F25 in card else None
        if effective is not None and today < effective:
            return self._end(Outcome.EXPIRED, "application not yet effective (5F25)")
        cryptogram = self._cryptogram(card)
        if cryptogram is not None:
            return cryptogram
        psn = card.get(0x5F34)
        context = self.terminal.values() | {0x95: TVR_NO_ODA, 0x84: df_name}
        online = tuple(
            (tag, card[tag] if tag in card else context[tag])
            for tag in ONLINE_TAGS
            if tag in card or tag in context
        )
        return KernelResult(
            outcome=Outcome.APPROVED_FOR_ONLINE,
            brand=candidate.entry.brand,
            card=CardData(
                pan=pan,
                expiry=expiry,
                pan_sequence_number=int(psn.hex()) if psn and psn.hex().isdigit() else None,
                brand=candidate.entry.brand,
                aid=df_name,
                application_label=label or candidate.entry.brand,
                track2=card.get(0x57),
                online_data=online,
                tokenized=0x9F19 in card,
            ),
        )

    def _cryptogram(self, card: dict[int, bytes]) -> KernelResult | None:
        """Make sure `card` holds an ARQC (9F26, 9F27, 9F36), asking with GENERATE AC if the
        card did not give one in the GPO answer; a result ends the tap."""
        if 0x9F26 not in card:
            cdol1 = card.get(0x8C)
            if cdol1 is None:
                return self._end(Outcome.NOT_ACCEPTED, "no cryptogram and no CDOL1 (8C)")
            values = card | self.terminal.values() | {0x95: TVR_NO_ODA}
            command = generate_ac(P1_ARQC, fill_dol(check_dol(cdol1), values))
            answer = exchange(self.transceive, command)
            if not answer.ok:
                return self._end(
                    Outcome.NOT_ACCEPTED,
                    f"GENERATE AC answered {answer.sw:04X} ({answer.meaning})",
                )
            generated = self._ac_data(answer.data)
            if isinstance(generated, KernelResult):
                return generated
            card.update(generated)
        if 0x9F27 not in card:
            card[0x9F27] = bytes((_cid_from_iad(card.get(0x9F10, b"")),))
        if len(card[0x9F26]) != 8 or len(card.get(0x9F36, b"")) != 2 or not card[0x9F27]:
            return self._end(Outcome.NOT_ACCEPTED, "cryptogram (9F26) or ATC (9F36) malformed")
        kind = card[0x9F27][0] & CID_TYPE_MASK
        if kind == CID_AAC:
            return self._end(Outcome.DECLINED, "card declined offline (AAC)")
        if kind != CID_ARQC:
            # Book 3 9.3: a card may not answer with a higher cryptogram than asked for; the
            # TTQ (9F66 byte 2 b8) asked every card for an online cryptogram.
            return self._end(Outcome.NOT_ACCEPTED, f"card answered cryptogram type {kind:02X}")
        return None

    def _ac_data(self, data: bytes) -> dict[int, bytes] | KernelResult:
        objects = parse(data)
        if len(objects) != 1:
            return self._end(Outcome.TAP_AGAIN, "GENERATE AC answer is not one object")
        template = objects[0]
        if template.tag == 0x80:  # format 1: CID, ATC, AC, then IAD (Book 3 6.5.5.4)
            value = template.value
            if len(value) < 11:
                return self._end(Outcome.TAP_AGAIN, "format 1 GENERATE AC answer too short")
            out = {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11]}
            if len(value) > 11:
                out[0x9F10] = value[11:]
            return out
        if template.tag != 0x77:
            return self._end(Outcome.TAP_AGAIN, f"GENERATE AC answer template {template.tag:X}")
        out = {obj.tag: obj.value for obj in _primitives(template.children)}
        for tag in (0x9F27, 0x9F36, 0x9F26):
            if tag not in out:
                return self._end(Outcome.NOT_ACCEPTED, f"GENERATE AC answer lacks {tag:X}")
        return out


def _cid_from_iad(iad: bytes) -> int:
    """The cryptogram type when the card sent no CID (9F27), as Book C-3 allows for qVSDC:
    Visa IAD formats 0/1/3 carry the Card Verification Results at bytes 4-7 (length 03
    first), whose byte 2 b6-b5 give the type of the first GENERATE AC: 00 AAC, 01 TC,
    10 ARQC. Any other layout: assume ARQC - the TTQ demanded an online cryptogram, and the
    issuer decides online either way."""
    if len(iad) >= 7 and iad[0] == 0x06 and iad[3] == 0x03:
        return {0: CID_AAC, 1: CID_TC, 2: CID_ARQC}.get((iad[5] >> 4) & 0x03, CID_ARQC)
    return CID_ARQC
