"""ISO/IEC 7816-4 command and response APDUs (short length), and status words.

EMV contactless uses short APDUs only (EMV Book 1 9.4 and Book A): at most 255 data bytes
out and 256 back. Command cases (ISO/IEC 7816-3 12.1.2, 7816-4 5.1):

    case 1: CLA INS P1 P2                    no data, no answer data
    case 2: CLA INS P1 P2 Le                 answer data expected
    case 3: CLA INS P1 P2 Lc data            data sent, none expected
    case 4: CLA INS P1 P2 Lc data Le         both

Le = 00 means "up to 256 bytes". The status word SW1 SW2 closes every response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from terminal.errors import ApduError

MAX_DATA = 255
MAX_LE = 256

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_REFERENCE_DATA_NOT_USABLE = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_COMMAND_NOT_ALLOWED = 0x6986
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_WRONG_P1P2 = 0x6A86
SW_DATA_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_NO_DIAGNOSIS = 0x6F00
SW_SELECTED_FILE_INVALIDATED = 0x6283

# ISO/IEC 7816-4 5.1.3 tables 5 and 6, with the meanings EMV Book 1 9.4.5 and Book 3
# Annex A give them.
_MEANINGS: dict[int, str] = {
    SW_OK: "normal processing",
    0x6281: "part of returned data may be corrupted",
    SW_SELECTED_FILE_INVALIDATED: "selected file invalidated (application blocked)",
    0x6300: "verification failed",
    0x6400: "execution error, memory unchanged",
    0x6581: "memory failure",
    SW_WRONG_LENGTH: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    SW_SECURITY_STATUS: "security status not satisfied",
    0x6983: "authentication method blocked",
    SW_REFERENCE_DATA_NOT_USABLE: "reference data not usable",
    SW_CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW_COMMAND_NOT_ALLOWED: "command not allowed",
    0x6A80: "incorrect parameters in the data field",
    SW_FUNCTION_NOT_SUPPORTED: "function not supported (card or application blocked)",
    SW_FILE_NOT_FOUND: "file or application not found",
    SW_RECORD_NOT_FOUND: "record not found",
    0x6A84: "not enough memory space in the file",
    SW_WRONG_P1P2: "incorrect parameters P1-P2",
    SW_DATA_NOT_FOUND: "referenced data not found",
    SW_INS_NOT_SUPPORTED: "instruction not supported",
    SW_CLA_NOT_SUPPORTED: "class not supported",
    SW_NO_DIAGNOSIS: "no precise diagnosis",
}


def describe_sw(sw: int) -> str:
    """A short meaning for a status word (ISO/IEC 7816-4 5.1.3)."""
    if sw in _MEANINGS:
        return _MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le, resend with Le={sw2:02X}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 in (0x62, 0x63):
        return "warning"
    return "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandApdu:
    """A short command APDU. `le` is None when no answer data is expected (cases 1 and 3);
    1-256 otherwise (256 is encoded as 00)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            byte = getattr(self, name)
            if not 0 <= byte <= 0xFF:
                raise ApduError(f"{name} {byte} is not a byte")
        if len(self.data) > MAX_DATA:
            raise ApduError(f"{len(self.data)} data bytes do not fit a short APDU")
        if self.le is not None and not 1 <= self.le <= MAX_LE:
            raise ApduError(f"Le {self.le} is out of range 1-256")

    @property
    def case(self) -> int:
        """ISO/IEC 7816-3 12.1.2 command case, 1 to 4."""
        if self.data:
            return 3 if self.le is None else 4
        return 1 if self.le is None else 2

    def encode(self) -> bytes:
        """The APDU bytes."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out.append(len(self.data))
            out += self.data
        if self.le is not None:
            out.append(self.le & 0xFF)
        return bytes(out)

    @staticmethod
    def decode(raw: bytes) -> CommandApdu:
        """Parse a short command APDU; `ApduError` if it is none of the four cases."""
        if len(raw) < 4:
            raise ApduError(f"command APDU of {len(raw)} bytes is shorter than a header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        if not body:
            return CommandApdu(cla=cla, ins=ins, p1=p1, p2=p2)
        if len(body) == 1:
            return CommandApdu(cla=cla, ins=ins, p1=p1, p2=p2, le=body[0] or MAX_LE)
        lc = body[0]
        if lc == 0:
            raise ApduError("Lc = 00 (extended length) is not used by EMV")
        if len(body) == 1 + lc:
            return CommandApdu(cla=cla, ins=ins, p1=p1, p2=p2, data=body[1:])
        if len(body) == 2 + lc:
            return CommandApdu(
                cla=cla, ins=ins, p1=p1, p2=p2, data=body[1:-1], le=body[-1] or MAX_LE
            )
        raise ApduError(f"Lc {lc} does not match {len(body) - 1} body bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseApdu:
    """A response APDU: data then SW1 SW2."""

    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        """SW1 SW2 as one number, e.g. 0x9000."""
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        """SW1 SW2 = 9000 (ISO/IEC 7816-4 5.1.3)."""
        return self.sw == SW_OK

    @property
    def meaning(self) -> str:
        """What the status word means."""
        return describe_sw(self.sw)

    def encode(self) -> bytes:
        """The response bytes."""
        return self.data + bytes((self.sw1, self.sw2))

    @staticmethod
    def decode(raw: bytes) -> ResponseApdu:
        """Split a response into data and status word; `ApduError` if under two bytes or SW1
        is not a valid status byte (ISO/IEC 7816-4 5.1.3: 61-6F or 90-9F)."""
        if len(raw) < 2:
            raise ApduError(f"response of {len(raw)} bytes has no status word")
        sw1 = raw[-2]
        if not (0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F):
            raise ApduError(f"SW1 {sw1:02X} is not a status byte")
        return ResponseApdu(data=bytes(raw[:-2]), sw1=sw1, sw2=raw[-1])


def select(name: bytes) -> CommandApdu:
    """SELECT by DF name, first occurrence (EMV Book 1 11.3; ISO/IEC 7816-4 7.1.1)."""
    return CommandApdu(cla=0x00, ins=0xA4, p1=0x04, p2=0x00, data=name, le=MAX_LE)


def get_processing_options(pdol_data: bytes) -> CommandApdu:
    """GET PROCESSING OPTIONS with the filled PDOL in template 83 (Book 3 6.5.8)."""
    if len(pdol_data) > 0x7F:
        body = b"\x83\x81" + bytes((len(pdol_data),)) + pdol_data
    else:
        body = b"\x83" + bytes((len(pdol_data),)) + pdol_data
    return CommandApdu(cla=0x80, ins=0xA8, p1=0x00, p2=0x00, data=body, le=MAX_LE)


def read_record(sfi: int, record: int) -> CommandApdu:
    """READ RECORD `record` of short file `sfi` (Book 3 6.5.11; P2 = SFI << 3 | 100)."""
    if not 1 <= sfi <= 30 or not 1 <= record <= 0xFE:
        raise ApduError(f"SFI {sfi} record {record} out of range")
    return CommandApdu(cla=0x00, ins=0xB2, p1=record, p2=(sfi << 3) | 0x04, le=MAX_LE)


def generate_ac(reference_control: int, cdol_data: bytes) -> CommandApdu:
    """GENERATE APPLICATION CRYPTOGRAM (Book 3 6.5.5); P1 b8-b7 name the cryptogram asked
    for (00 AAC, 40 TC, 80 ARQC), b5 asks for CDA."""
    return CommandApdu(cla=0x80, ins=0xAE, p1=reference_control, p2=0x00, data=cdol_data, le=MAX_LE)


def get_response(length: int) -> CommandApdu:
    """GET RESPONSE for the bytes a 61xx status announced (ISO/IEC 7816-4 7.6.1)."""
    return CommandApdu(cla=0x00, ins=0xC0, p1=0x00, p2=0x00, le=length or MAX_LE)


# A card that chains 61xx without end, or answers 6Cxx again and again, must not hang us.
MAX_TRANSPORT_ROUNDS = 8


def exchange(transceive: Callable[[bytes], bytes], command: CommandApdu) -> ResponseApdu:
    """Send `command` and return the complete response, handling the transport-level
    status words: 6Cxx resends with Le = xx, 61xx fetches the rest with GET RESPONSE
    (ISO/IEC 7816-3 12.2; EMV Book 1 9.3.1).

    Raises `ApduError` if the card's answers are malformed or the chain does not end.
    Exceptions from `transceive` (card removed, reader failure) pass through."""
    response = ResponseApdu.decode(transceive(command.encode()))
    data = b""
    for _ in range(MAX_TRANSPORT_ROUNDS):
        if response.sw1 == 0x6C:
            command = CommandApdu(
                cla=command.cla,
                ins=command.ins,
                p1=command.p1,
                p2=command.p2,
                data=command.data,
                le=response.sw2 or MAX_LE,
            )
            response = ResponseApdu.decode(transceive(command.encode()))
        elif response.sw1 == 0x61:
            data += response.data
            response = ResponseApdu.decode(transceive(get_response(response.sw2).encode()))
        else:
            return ResponseApdu(data=data + response.data, sw1=response.sw1, sw2=response.sw2)
    raise ApduError(f"card kept answering {response.sw:04X} after {MAX_TRANSPORT_ROUNDS} rounds")
