"""A contactless card (PICC) in an emulated reader's field, as the reader's RF side sees it.

It wraps any `hardware.ports.CardTarget` and adds what the card itself does on the air, so the
emulated PN532 can run the real nfcpy initiator code against it:

- ISO/IEC 14443-3 activation: Type A (SENS_RES, UID with cascade levels, SEL_RES) and Type B
  (ATQB, ATTRIB);
- ISO/IEC 14443-4 (ISO-DEP): RATS/ATS, I-blocks with chaining in both directions, R(ACK),
  R(NAK) and the block-number rules of clause 7.5.4, S(DESELECT), and S(WTX) while the wrapped
  card is still computing its answer;
- NFC Forum Type 2 READ (16 bytes from four 4-byte pages) for UID-only tags with a 7-byte UID.

The wrapped card's `transceive` answers each complete command APDU. If it raises `CardGone`
the card has left the field: it never answers again, as a torn-away card. If it raises another
`DeviceFault` (a scripted card that stays mute) that one command gets no answer, so the reader
times out. Any other exception is a bug in the test card; it is kept in `errors` and the card
leaves.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from hardware.ports import CardGone, CardTarget, DeviceFault

# ISO/IEC 14443-4 5.2.2 (FSDI/FSCI to frame size) and 7.1.1 (block PCB coding).
FRAME_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 256)
PCB_I = 0x02
PCB_R_ACK = 0xA2
PCB_S_DESELECT = 0xC2
PCB_S_WTX = 0xF2
PCB_CHAINING = 0x10
PCB_CID = 0x08
PCB_NAD = 0x04
PCB_R_NAK = 0x10
RATS = 0xE0
# ISO/IEC 14443-3 6.5.2 (SENS_RES), 6.5.3.3 (SEL_RES): bit 6 of SEL_RES says ISO-DEP.
SEL_RES_ISO_DEP = 0x20
SEL_RES_TYPE_2 = 0x00
CASCADE_TAG = 0x88
# ISO/IEC 14443-3 7.9 (REQB/WUPB: APf 05, PARAM bit 4 = WUPB) and 7.10 (ATTRIB: 1D).
APF = 0x05
WUPB_BIT = 0x08
ATTRIB = 0x1D
TYPE2_READ = 0x30
TYPE2_PAGES = 16  # a MIFARE Ultralight: 16 pages of 4 bytes
WTXM = 1  # ask for one more frame waiting time per S(WTX)


def frame_waiting_time(fwi: int) -> float:
    """ISO/IEC 14443-4 7.2: FWT = (256 x 16 / fc) x 2^FWI, fc = 13.56 MHz."""
    return 4096 / 13.56e6 * (1 << fwi)


@dataclass(frozen=True, slots=True)
class AtsParameters:
    """What an ATS tells the reader (ISO/IEC 14443-4 5.2): the card's frame size, its frame
    waiting time integer, and whether it takes a CID."""

    fsc: int
    fwi: int
    cid: bool


def parse_ats(ats: bytes) -> AtsParameters:
    """ISO/IEC 14443-4 5.2.2-5.2.6: TL (the length, itself included), then optionally T0 (bits
    5-7 say TA, TB, TC follow; bits 1-4 FSCI), TA, TB (FWI in the high nibble), TC (bit 2: CID
    supported), historical bytes. What is absent takes its default: FSCI 2 (32 bytes), FWI 4,
    CID supported."""
    if not ats or ats[0] != len(ats):
        raise ValueError("an ATS starts with TL, its own length")
    fsci, fwi, cid = 2, 4, True
    if len(ats) > 1:
        t0, at = ats[1], 2
        fsci = t0 & 0x0F
        present = [bool(t0 & bit) for bit in (0x10, 0x20, 0x40)]
        if at + sum(present) > len(ats):
            raise ValueError("T0 announces interface bytes the ATS does not have")
        if present[0]:
            at += 1  # TA: bit rates; only 106 kbit/s is emulated
        if present[1]:
            fwi = ats[at] >> 4
            at += 1
        if present[2]:
            cid = bool(ats[at] & 0x02)
    return AtsParameters(fsc=FRAME_SIZES[min(fsci, 8)], fwi=fwi, cid=cid)


def crc_a(data: bytes) -> bytes:
    """ISO/IEC 14443-3 Annex B CRC_A (initial 6363h, reflected CCITT), low byte first."""
    reg = 0x6363
    for octet in data:
        reg ^= octet
        for _ in range(8):
            reg = (reg >> 1) ^ 0x8408 if reg & 1 else reg >> 1
    return bytes([reg & 0xFF, reg >> 8])


class Technology(enum.Enum):
    """ISO/IEC 14443 signalling type the card answers to."""

    A = "A"
    B = "B"


class Layer(enum.Enum):
    """Where the card stands in activation (ISO/IEC 14443-3 state diagrams, plus layer 4)."""

    IDLE = "idle"  # powered, waiting for REQA/REQB
    READY = "ready"  # Type B: answered WUPB, waiting for ATTRIB
    ACTIVE = "active"  # Type A: selected, layer 3 commands or RATS
    PROTOCOL = "protocol"  # ISO-DEP blocks
    HALT = "halt"  # deselected or muted until the field is cycled (or WUPB)


class _CardCall:
    """One APDU handed to the wrapped card on a helper thread, so the reader can send S(WTX)
    while a slow card computes its answer (ISO/IEC 14443-4 7.3)."""

    def __init__(self, card: CardTarget, apdu: bytes) -> None:
        self.answer: bytes | None = None
        self.error: Exception | None = None
        self._done = threading.Event()
        self._card, self._apdu = card, apdu
        threading.Thread(target=self._run, name="picc-apdu", daemon=True).start()

    def _run(self) -> None:
        try:
            self.answer = bytes(self._card.transceive(self._apdu))
        except Exception as error:  # handed to the reader thread as data
            self.error = error
        finally:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class Picc:
    """The card in the field. Only the emulated reader calls it, from its one thread."""

    def __init__(
        self,
        card: CardTarget,
        *,
        technology: Technology = Technology.A,
        sel_res: int | None = None,
        fwi: int = 7,
        ats: bytes | None = None,
    ) -> None:
        """`ats`: the card's own ATS (any of the forms ISO/IEC 14443-4 allows, with or without
        TA/TB/TC); its FWI, frame size and CID support then rule the card. Default: TA, TB
        (FWI `fwi`) and TC present, FSCI 8 (256 bytes)."""
        uid = bytes(card.uid)
        sizes = (4,) if technology is Technology.B else (4, 7, 10)
        if len(uid) not in sizes:
            raise ValueError(f"a Type {technology.value} UID has {sizes} bytes, not {len(uid)}")
        if technology is Technology.B and not card.iso_dep:
            raise ValueError("a Type B card is always ISO-DEP here (no Type B UID-only tags)")
        self.card = card
        self.uid = uid
        self.technology = technology
        self.sel_res = (
            sel_res
            if sel_res is not None
            else (SEL_RES_ISO_DEP if card.iso_dep else SEL_RES_TYPE_2)
        )
        self._ats = ats if ats is not None else bytes([0x05, 0x78, 0x80, fwi << 4, 0x02])
        params = parse_ats(self._ats)
        if technology is Technology.B:  # ATQB's protocol info rules: 256 bytes, CID supported
            params = AtsParameters(fsc=256, fwi=fwi, cid=True)
        self.fsc = params.fsc
        self.cid_supported = params.cid
        self.fwt = frame_waiting_time(params.fwi)
        self._fwi = fwi if technology is Technology.B else params.fwi
        self.gone = False
        self.errors: list[Exception] = []
        self.layer = Layer.IDLE
        self._bn = 1
        self._rx = bytearray()
        self._tx = b""
        self._last: bytes | None = None
        self._call: _CardCall | None = None
        self._cid: int | None = None
        self._fsd = 256

    # -- the RF field ----------------------------------------------------------------------

    def power_off(self) -> None:
        """The reader switched its field off: the card loses power and all state (a wrapped
        card that keeps state of its own, a scripted card, is told by its `power_lost`)."""
        self.layer = Layer.IDLE
        self._reset_protocol()
        power_lost = getattr(self.card, "power_lost", None)
        if callable(power_lost):
            power_lost()

    def deselect(self) -> None:
        """The reader deselected the card (S(DESELECT) or HLTA): it waits for a wake-up."""
        if not self.gone:
            self.layer = Layer.HALT
            self._reset_protocol()

    def leave(self) -> None:
        """The card left the field; it never answers again."""
        self.gone = True
        self.layer = Layer.HALT
        self._reset_protocol()

    # -- ISO/IEC 14443-3 activation, done by the reader chip's firmware ----------------------

    def activate_a(self, initiator_data: bytes) -> tuple[bytes, int, bytes] | None:
        """REQA + anticollision + SELECT. Returns (SENS_RES in air order, SEL_RES, UID) or None.

        `initiator_data` is the UID the host asked for (PN532 InListPassiveTarget, with the
        cascade tags it adds for 7- and 10-byte UIDs), or empty for any card."""
        if self.gone or self.technology is not Technology.A or self.layer is not Layer.IDLE:
            return None
        if initiator_data and bytes(initiator_data) != self.cascaded_uid():
            return None
        self.layer = Layer.ACTIVE
        self._reset_protocol()
        size_bits = {4: 0b00, 7: 0b01, 10: 0b10}[len(self.uid)] << 6
        return bytes([size_bits | 0x04, 0x00]), self.sel_res, self.uid

    def cascaded_uid(self) -> bytes:
        """The UID as sent cascade level by level (ISO/IEC 14443-3 6.5.4, CT = 88h)."""
        uid = self.uid
        if len(uid) == 4:
            return uid
        if len(uid) == 7:
            return bytes([CASCADE_TAG]) + uid
        return bytes([CASCADE_TAG]) + uid[:3] + bytes([CASCADE_TAG]) + uid[3:]

    def activate_b(self, afi: int) -> bytes | None:
        """REQB; returns the ATQB. The card then waits for ATTRIB."""
        del afi  # the card belongs to every application family (AFI 00h is "all")
        if self.gone or self.technology is not Technology.B or self.layer is not Layer.IDLE:
            return None
        self.layer = Layer.READY
        return self.atqb()

    def atqb(self) -> bytes:
        """ISO/IEC 14443-3 7.9.4: 50h, PUPI, application data, protocol info.

        Protocol info: bit rate 106 kbit/s only; max frame size 256 (FSCI 8) and ISO 14443-4
        compliant (protocol type 1); FWI, no ADC, CID supported."""
        protocol = bytes([0x00, 0x80 | 0x01, self._fwi << 4 | 0x01])
        return b"\x50" + self.uid + b"\x00\x00\x00\x00" + protocol

    # -- frames the host sends through the reader (PN532 InCommunicateThru) -------------------

    def exchange_frame(self, frame: bytes) -> bytes | None:
        """Answer one frame, or None if the card stays silent (the reader then times out)."""
        if self.gone or not frame:
            return None
        if self.layer is Layer.PROTOCOL:
            return self._block(frame)
        if self.technology is Technology.B:
            return self._type_b_layer3(frame)
        if self.layer is not Layer.ACTIVE:
            return None
        if self.card.iso_dep and frame[0] == RATS and len(frame) == 2:
            self._fsd = FRAME_SIZES[min(frame[1] >> 4, 8)]
            self._cid = None
            self.layer = Layer.PROTOCOL
            return self.ats()
        if frame[0] == TYPE2_READ and len(frame) == 2 and len(self.uid) == 7:
            return self._type2_read(frame[1])
        self.layer = Layer.HALT  # a Type 2 tag goes mute on a command it does not know
        return None

    def ats(self) -> bytes:
        """ISO/IEC 14443-4 5.2. By default TL, T0 (TA, TB, TC follow; FSCI 8), TA 80h (106
        kbit/s only), TB (FWI, SFGI 0), TC 02h (CID supported, no NAD); else the card's own."""
        return self._ats

    def _type_b_layer3(self, frame: bytes) -> bytes | None:
        if frame[0] == APF and len(frame) >= 3:
            wakeup = bool(frame[2] & WUPB_BIT)
            if self.layer is Layer.IDLE or (wakeup and self.layer is Layer.HALT):
                self.layer = Layer.READY
                return self.atqb()
            return None
        if self.layer is Layer.READY and frame[0] == ATTRIB and frame[1:5] == self.uid:
            return self.attrib(frame)
        return None

    def attrib(self, frame: bytes) -> bytes:
        """ISO/IEC 14443-3 7.10: take FSDI from Param 2 and the CID from Param 4; answer with
        MBLI 0 and the CID."""
        self._fsd = FRAME_SIZES[min(frame[6] & 0x0F, 8)] if len(frame) > 6 else 256
        cid = frame[8] & 0x0F if len(frame) > 8 else 0
        self._reset_protocol(keep_fsd=True)
        self._cid = cid or None
        self.layer = Layer.PROTOCOL
        return bytes([cid])

    def _type2_read(self, page: int) -> bytes | None:
        if page >= TYPE2_PAGES:
            self.layer = Layer.HALT
            return None
        memory = self.type2_memory()
        return bytes(memory[(4 * (page + i)) % len(memory)] for i in range(16))

    def type2_memory(self) -> bytes:
        """MIFARE Ultralight layout: UID with its check bytes (BCC0 = CT ^ UID0..2, BCC1 =
        UID3..6), lock bytes, capability container (E1h, version 1.0, 48 bytes, read/write) and
        an empty NDEF message TLV."""
        u = self.uid
        bcc0 = CASCADE_TAG ^ u[0] ^ u[1] ^ u[2]
        bcc1 = u[3] ^ u[4] ^ u[5] ^ u[6]
        head = u[:3] + bytes([bcc0]) + u[3:7] + bytes([bcc1, 0x48, 0, 0, 0xE1, 0x10, 0x06, 0x00])
        data = bytes([0x03, 0x00, 0xFE])
        return head + data + bytes(4 * TYPE2_PAGES - len(head) - len(data))

    # -- ISO/IEC 14443-4 block protocol -----------------------------------------------------

    def _reset_protocol(self, *, keep_fsd: bool = False) -> None:
        self._bn = 1  # Rule D: the PICC block number starts at 1
        self._rx = bytearray()
        self._tx = b""
        self._last = None
        self._call = None
        self._cid = None
        if not keep_fsd:
            self._fsd = 256

    def _block(self, frame: bytes) -> bytes | None:
        if len(frame) + 2 > self.fsc:
            return None  # longer than the card's FSC (with CRC_A): it cannot take it, no answer
        pcb = frame[0]
        if pcb & PCB_CID and not self.cid_supported:
            return None  # ISO/IEC 14443-4 7.1.1.2: a PICC without CID ignores blocks with one
        at = 1
        if pcb & PCB_CID:
            at += 1
        if (pcb & 0xE2) == PCB_I and pcb & PCB_NAD:
            at += 1
        inf = frame[at:]
        if (pcb & 0xE2) == PCB_I:
            return self._i_block(pcb, inf)
        if (pcb & 0xE6) == PCB_R_ACK:
            return self._r_block(pcb)
        if (pcb & 0xF7) == PCB_S_DESELECT:
            self.layer = Layer.HALT
            answer = bytes(frame[:at])
            self._reset_protocol()
            return answer
        if (pcb & 0xF7) == PCB_S_WTX and self._call is not None:
            return self._answer_or_wait()
        return None  # ISO/IEC 14443-4 7.5.4.2 rule 7: an invalid block is ignored

    def _i_block(self, pcb: int, inf: bytes) -> bytes | None:
        if pcb & 1 != self._bn:  # Rule E: toggle on a block number not equal to ours
            self._bn ^= 1
        self._tx = b""
        if pcb & PCB_CHAINING:
            self._rx += inf
            return self._send(bytes([PCB_R_ACK | self._bn]))
        apdu = bytes(self._rx) + inf
        self._rx.clear()
        self._call = _CardCall(self.card, apdu)
        return self._answer_or_wait()

    def _r_block(self, pcb: int) -> bytes | None:
        if pcb & 1 == self._bn:  # Rule 11: re-transmit the last block
            return self._last
        if pcb & PCB_R_NAK:  # Rule 12: R(NAK) with the other number gets R(ACK)
            return self._prefixed(bytes([PCB_R_ACK | self._bn]))
        if self._tx:  # Rule 13: R(ACK) with the other number continues our chaining
            self._bn ^= 1
            return self._next_chunk()
        return None

    def _answer_or_wait(self) -> bytes | None:
        call = self._call
        assert call is not None
        if not call.wait(self.fwt / 2):
            return self._send(bytes([PCB_S_WTX, WTXM]))
        self._call = None
        if call.error is not None:
            self._failed(call.error)
            return None
        assert call.answer is not None
        self._tx = call.answer
        return self._next_chunk()

    def _next_chunk(self) -> bytes:
        room = self._fsd - 3 - (1 if self._cid is not None else 0)  # PCB, CID, two CRC bytes
        chunk, self._tx = self._tx[:room], self._tx[room:]
        pcb = PCB_I | self._bn | (PCB_CHAINING if self._tx else 0)
        return self._send(bytes([pcb]) + chunk)

    def _prefixed(self, block: bytes) -> bytes:
        if self._cid is None:
            return block
        return bytes([block[0] | PCB_CID, self._cid]) + block[1:]

    def _send(self, block: bytes) -> bytes:
        self._last = self._prefixed(block)
        return self._last

    # -- APDUs the reader chip carries itself (PN532 InDataExchange) -------------------------

    def exchange_apdu(self, apdu: bytes, timeout: float) -> bytes | None:
        """The PN532 firmware runs ISO-DEP itself for InDataExchange: hand the APDU over."""
        if self.gone or not self.card.iso_dep or self.layer not in (Layer.ACTIVE, Layer.PROTOCOL):
            return None
        call = _CardCall(self.card, apdu)
        if not call.wait(timeout):
            return None
        if call.error is not None:
            self._failed(call.error)
            return None
        return call.answer

    def _failed(self, error: Exception) -> None:
        """The wrapped card raised instead of answering."""
        if isinstance(error, CardGone):
            self.leave()
        elif isinstance(error, DeviceFault):
            self._last = None  # a mute card: nothing to re-transmit, the reader times out
        else:
            self.errors.append(error)
            self.leave()
