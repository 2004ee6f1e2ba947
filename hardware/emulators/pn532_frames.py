"""PN532 host-link frames (HSU/UART), from the chip's side of the wire.

NXP PN532 User Manual (UM0701-02), section 6.2 "Host link frames":

    normal information frame    00 00 FF LEN LCS TFI PD0..PDn DCS 00
    extended information frame  00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00
    ACK frame                   00 00 FF 00 FF 00
    NACK frame                  00 00 FF FF 00 00
    syntax error frame          00 00 FF 01 FF 7F 81 00

LEN counts TFI and the data bytes; LCS makes LEN + LCS = 0 (mod 256); DCS makes
TFI + PD0..PDn + DCS = 0 (mod 256). TFI is D4 host to chip, D5 chip to host. The host may
precede a frame with any number of 00 bytes (and 55 bytes to wake the HSU), so the parser looks
for the start code 00 FF and skips whatever comes before it.
"""

from __future__ import annotations

from dataclasses import dataclass

START_CODE = b"\x00\xff"
ACK = bytes.fromhex("0000ff00ff00")
NACK = bytes.fromhex("0000ffff0000")
SYNTAX_ERROR = bytes.fromhex("0000ff01ff7f8100")  # UM0701-02 6.2.1.5, "application level error"
TFI_HOST_TO_CHIP = 0xD4
TFI_CHIP_TO_HOST = 0xD5
MAX_NORMAL_LEN = 254  # a LEN of FF marks an extended frame, so normal frames stop below it


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The host acknowledged a response, or cancels the command in progress."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """The host asks for the last response frame again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A well-formed host command: its code and parameter bytes (without TFI and code)."""

    code: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BadFrame:
    """A frame whose checksums or identifier were wrong; the chip does not acknowledge it."""

    reason: str


HostFrame = Ack | Nack | Command | BadFrame


def response_frame(code: int, data: bytes) -> bytes:
    """The chip's answer to command `code`: TFI D5, response code `code + 1`, then `data`."""
    body = bytes([TFI_CHIP_TO_HOST, (code + 1) & 0xFF]) + data
    length = len(body)
    if length <= MAX_NORMAL_LEN:
        head = START_CODE + bytes([length, -length & 0xFF])
    else:
        lenm, lenl = length >> 8, length & 0xFF
        head = START_CODE + bytes([0xFF, 0xFF, lenm, lenl, -(lenm + lenl) & 0xFF])
    return b"\x00" + head + body + bytes([-sum(body) & 0xFF, 0x00])


class HostFrameParser:
    """Splits the byte stream from the host into frames. Feed it bytes as they arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[HostFrame]:
        self._buf += data
        frames: list[HostFrame] = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> HostFrame | None:
        start = self._buf.find(START_CODE)
        if start < 0:
            # Keep a trailing 00: it may be the first half of the next start code.
            del self._buf[: max(len(self._buf) - 1, 0)]
            return None
        del self._buf[:start]
        buf = self._buf
        if len(buf) < 4:
            return None
        lead = bytes(buf[2:4])
        if lead == b"\x00\xff":
            del buf[:4]
            return Ack()
        if lead == b"\xff\x00":
            del buf[:4]
            return Nack()
        if lead == b"\xff\xff":
            if len(buf) < 7:
                return None
            length, header = buf[4] << 8 | buf[5], 7
            if (buf[4] + buf[5] + buf[6]) & 0xFF:
                del buf[:2]
                return BadFrame(reason="extended length checksum")
        else:
            length, header = buf[2], 4
            if (buf[2] + buf[3]) & 0xFF:
                del buf[:2]
                return BadFrame(reason="length checksum")
        if len(buf) < header + length + 1:
            return None
        body = bytes(buf[header : header + length])
        dcs = buf[header + length]
        del buf[: header + length + 1]  # the 00 postamble, if sent, is skipped as preamble
        if (sum(body) + dcs) & 0xFF:
            return BadFrame(reason="data checksum")
        if length < 2 or body[0] != TFI_HOST_TO_CHIP:
            return BadFrame(reason="frame identifier")
        return Command(code=body[1], data=body[2:])
