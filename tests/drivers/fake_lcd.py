"""An emulated I2C LCD: a stand-in for `smbus2.SMBus` with a PCF8574 backpack and an HD44780
20x4 controller behind it.

Each `write_byte` sets the PCF8574's eight port lines (P0 RS, P1 RW, P2 E, P3 backlight,
P4..P7 D4..D7). The controller latches D7..D4 on each falling edge of E. After power-up it is
in 8-bit mode, where each latch is a whole instruction (D3..D0 are not wired, read as 0); a
function set with DL=0 switches it to 4-bit mode, where two latches make one byte, high
nibble first. Instructions and data act on a 128-byte DDRAM as the datasheet's table 6 says
(two-line mode: addresses 0x00-0x27 and 0x40-0x67, the address counter wrapping from one line
to the next). A write to another address raises OSError 121 (no ACK), as Linux i2c-dev does.
"""

from __future__ import annotations

import errno

from drivers.display_lcd import ROM_A00, ROW_ADDRESSES

RS, RW, EN, BACKLIGHT = 0x01, 0x02, 0x04, 0x08
CHARS = {code: char for char, code in ROM_A00.items()}


class FakeLcdBus:
    def __init__(self, address: int = 0x27, *, four_bit: bool = False) -> None:
        self.address = address
        self.ddram = bytearray(b" " * 0x80)
        self.ac = 0  # address counter
        self.four_bit = four_bit  # False after power-up; True to model a daemon restart
        self.pending: int | None = None  # high nibble of a 4-bit byte
        self.two_line = False
        self.display_on = False
        self.increment = True
        self.backlight = False
        self.port = 0
        self.writes = 0
        self.instructions: list[int] = []
        self.unplugged = False
        self.closed = False

    # -- smbus2.SMBus ------------------------------------------------------------------------
    def write_byte(self, i2c_addr: int, value: int) -> None:
        if self.unplugged or i2c_addr != self.address:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        assert 0 <= value <= 0xFF
        assert not value & RW, "the driver must never read (RW high)"
        self.writes += 1
        falling = self.port & EN and not value & EN
        if falling:
            self._latch(self.port >> 4, bool(self.port & RS))
        self.port = value
        self.backlight = bool(value & BACKLIGHT)

    def close(self) -> None:
        self.closed = True

    # -- the controller ----------------------------------------------------------------------
    def _latch(self, nibble: int, rs: bool) -> None:
        if not self.four_bit:
            self._execute(nibble << 4, rs)
            return
        if self.pending is None:
            self.pending = nibble
            return
        byte, self.pending = (self.pending << 4) | nibble, None
        self._execute(byte, rs)

    def _execute(self, byte: int, rs: bool) -> None:
        if rs:
            self.ddram[self.ac] = byte
            self._step()
            return
        self.instructions.append(byte)
        if byte & 0x80:
            self.ac = byte & 0x7F
        elif byte & 0x40:
            pass  # CGRAM address: custom characters, unused
        elif byte & 0x20:
            self.four_bit = not byte & 0x10
            self.pending = None
            self.two_line = bool(byte & 0x08)
        elif byte & 0x10:
            pass  # cursor or display shift, unused
        elif byte & 0x08:
            self.display_on = bool(byte & 0x04)
        elif byte & 0x04:
            self.increment = bool(byte & 0x02)
        elif byte & 0x02:
            self.ac = 0
        elif byte == 0x01:
            self.ddram[:] = b" " * 0x80
            self.ac = 0
            self.increment = True

    def _step(self) -> None:
        ac = self.ac + (1 if self.increment else -1)
        if self.two_line:
            if ac == 0x28:
                ac = 0x40
            elif ac == 0x68:
                ac = 0x00
        self.ac = ac % 0x80

    # -- what a person would read ------------------------------------------------------------
    def rows(self) -> list[str]:
        """The four rows as text (only meaningful with the display on in two-line mode)."""
        return [
            "".join(CHARS.get(b, chr(b)) for b in self.ddram[start : start + 20])
            for start in ROW_ADDRESSES
        ]
