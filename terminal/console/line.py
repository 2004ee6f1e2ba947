"""Line editing for a serial terminal (screen, minicom, PuTTY), byte by byte.

The port is raw: nothing echoes but us. Printable ASCII is echoed and kept (up to a limit);
backspace (BS or DEL, whichever the emulator sends) erases one character, ^W one word, ^U the
whole line; ^C abandons the line; CR, LF or CR LF ends it (the LF after a CR is swallowed, so
each emulator's Enter counts once). Escape sequences (arrow and function keys: ESC [ ... or
ESC O x, ECMA-48 5.4) are swallowed whole. In secret mode (a PIN) nothing is echoed but the
line end.
"""

from __future__ import annotations

from dataclasses import dataclass

BS, DEL, CTRL_C, CTRL_U, CTRL_W, ESC, CR, LF = 0x08, 0x7F, 0x03, 0x15, 0x17, 0x1B, 0x0D, 0x0A
ERASE = b"\b \b"
NEWLINE = b"\r\n"
MAX_LINE = 200


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """^C: the line was abandoned."""


Input = Line | Interrupt


class LineEditor:
    def __init__(self, max_len: int = MAX_LINE) -> None:
        self.max_len = max_len
        self.secret = False
        self._buf: list[str] = []
        self._after_cr = False
        self._escape = 0  # 0: none; 1: after ESC; 2: in a CSI/SS3 sequence

    def feed(self, data: bytes) -> tuple[bytes, list[Input]]:
        """Take received bytes; return what to echo and the inputs completed."""
        echo = bytearray()
        inputs: list[Input] = []
        for byte in data:
            after_cr, self._after_cr = self._after_cr, False
            if self._escape == 1:
                self._escape = 2 if byte in (ord("["), ord("O")) else 0
                continue
            if self._escape == 2:
                if 0x40 <= byte <= 0x7E:  # the final byte of the sequence
                    self._escape = 0
                continue
            if byte == ESC:
                self._escape = 1
            elif byte == LF and after_cr:
                continue
            elif byte in (CR, LF):
                self._after_cr = byte == CR
                echo += NEWLINE
                inputs.append(Line("".join(self._buf)))
                self._buf.clear()
            elif byte == CTRL_C:
                echo += b"^C" + NEWLINE
                self._buf.clear()
                inputs.append(Interrupt())
            elif byte in (BS, DEL):
                if self._buf:
                    self._buf.pop()
                    if not self.secret:
                        echo += ERASE
            elif byte == CTRL_U:
                if not self.secret:
                    echo += ERASE * len(self._buf)
                self._buf.clear()
            elif byte == CTRL_W:
                erased = 0
                while self._buf and self._buf[-1] == " ":
                    self._buf.pop()
                    erased += 1
                while self._buf and self._buf[-1] != " ":
                    self._buf.pop()
                    erased += 1
                if not self.secret:
                    echo += ERASE * erased
            elif 0x20 <= byte < 0x7F and len(self._buf) < self.max_len:
                self._buf.append(chr(byte))
                if not self.secret:
                    echo.append(byte)
        return bytes(echo), inputs

    def clear(self) -> None:
        self._buf.clear()
