"""A 20x4 character LCD (HD44780) on an I2C "backpack" (PCF8574 port expander). Implements
`Display`.

Wiring of the common backpack (PCF8574 port bit -> LCD pin): P0 RS, P1 RW, P2 E, P3 backlight
(transistor), P4..P7 D4..D7. The controller runs in 4-bit mode: every byte goes as two nibbles,
high first, each latched on the falling edge of E (HD44780U datasheet, "Interfacing to the MPU",
figure 9). One `write_byte` to the PCF8574 sets all eight lines, so a nibble is two writes:
E high with the data, then E low with the same data. RW is always low (write only): the
busy flag is never read, so the driver waits the instruction times instead (37 us for most
instructions, covered by the I2C transfer time of the next write at 100 kHz; 1.52 ms after
clear and home).

Initialisation: "Initializing by instruction", datasheet figure 24 (4-bit interface): 0x3,
wait > 4.1 ms, 0x3, wait > 100 us, 0x3, then 0x2 (4-bit), then function set 0x28 (two-line
mode, 5x8 dots: a 20x4 module is wired as two long lines), display off 0x08, clear 0x01,
entry mode 0x06 (increment, no shift), display on 0x0C (no cursor, no blink). The three 0x3
nibbles bring the controller into 8-bit mode from any state, also from the middle of a 4-bit
byte after the daemon restarted, so the same sequence works after power-up and after a restart.

DDRAM addresses of the four rows of a 20x4 module: 0x00, 0x40, 0x14, 0x54 (row 3 continues
row 1 in the controller's first line, row 4 continues row 2).

Rendering (`lcd_rows`): row 1 is the title, with the frame's "Time" field right-aligned on it
when there is room; rows 2-4 are the labelled fields (label left, value right; the frame's
`total` first, then its `code` (a receipt's link code), in any language),
then the text lines, word-wrapped at 20 columns; what does not fit in four rows is left out.
Characters outside the controller's ROM (code A00: ASCII plus Japanese katakana and a few
symbols) become their closest ASCII form or "?". The QR code of a
receipt cannot be shown on a character LCD; its total, energy and card are. Nor can the pay-by-
phone QR code (a link `https://HOST/pay/CODE`): the LCD shows the title, one row of the
screen's text (the price on the idle screen), then the short address to type, `HOST/pay`, and
the one-time code on the last row; the gateway's `HOST/pay` page takes the code typed in. So
the gateway's public address (`ev-terminal gateway --public-url`) should be short on LCD
kiosks: `HOST/pay` is cut at 20 characters (a 16-character host fits).

Failures: the bus is opened at the first `show`. An I2C error (no device at the address, a
loose cable) is logged, never raised (the port's contract), and the next `show`
re-initialises the module from scratch, so a replugged LCD comes back with the current frame.
"""

from __future__ import annotations

import logging
import textwrap
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from hardware.ports import Frame

log = logging.getLogger(__name__)

COLUMNS, ROWS = 20, 4
ROW_ADDRESSES = (0x00, 0x40, 0x14, 0x54)
LCD_FIRST = ("Total",)  # fields that lead on four rows (the receipt's total before its VAT)

# PCF8574 port bits on the common backpack.
RS = 0x01
RW = 0x02
EN = 0x04
BACKLIGHT = 0x08

# HD44780 instructions (datasheet table 6).
CLEAR = 0x01
ENTRY_MODE_INCREMENT = 0x06
DISPLAY_OFF = 0x08
DISPLAY_ON = 0x0C
FUNCTION_4BIT_2LINE = 0x28
SET_DDRAM = 0x80

CLEAR_WAIT_S = 0.002  # clear display: 1.52 ms at 270 kHz
POWER_ON_WAIT_S = 0.005  # after the first 0x3 nibble: > 4.1 ms

# ROM code A00 places a few non-ASCII characters (datasheet table 4).
ROM_A00 = {"ä": 0xE1, "ß": 0xE2, "ö": 0xEF, "ü": 0xF5, "°": 0xDF, "µ": 0xE4}
# A00 has a yen sign at 0x5C and arrows at 0x7E/0x7F, and no euro sign.
ASCII_STAND_INS = {"\\": "/", "~": "-", "€": "E"}


class SMBusLike(Protocol):
    """The part of `smbus2.SMBus` this driver uses."""

    def write_byte(self, i2c_addr: int, value: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LcdSettings:
    """[hardware.display] with kind = "lcd". `bus` is /dev/i2c-<bus> (1 on a Pi's header);
    `address` is the PCF8574's 7-bit address (0x27 for PCF8574T, 0x3F for PCF8574AT)."""

    bus: int = 1
    address: int = 0x27
    backlight: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.bus, bool) or not 0 <= self.bus <= 255:
            raise ValueError(f"hardware.display.bus: must be 0..255, got {self.bus!r}")
        # I2C-bus specification UM10204, 3.1.12: 0x08..0x77 are the usable 7-bit addresses.
        if isinstance(self.address, bool) or not 0x08 <= self.address <= 0x77:
            raise ValueError(
                f"hardware.display.address: must be a 7-bit address 0x08..0x77, "
                f"got {self.address!r}"
            )


def lcd_char(char: str) -> int:
    """The ROM A00 code for one character (ASCII, a few symbols, else "?")."""
    char = ASCII_STAND_INS.get(char, char)
    if " " <= char <= "}" and char != "\\":
        return ord(char)
    if char in ROM_A00:
        return ROM_A00[char]
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    return ord(plain[0]) if plain and " " <= plain[0] <= "}" and plain[0] != "\\" else ord("?")


def _fit(text: str) -> str:
    return text[:COLUMNS].ljust(COLUMNS)


def _pair(left: str, right: str) -> str:
    room = COLUMNS - len(right) - 1
    if room < 1:
        return _fit(right)
    return f"{left[:room]:<{room}} {right}"


def pay_link(url: str) -> tuple[str, str] | None:
    """A pay-by-phone link (`https://HOST/pay/CODE`) as the short address to type and the
    code; None for any other link (a receipt's)."""
    parts = urlsplit(url)
    head, found, code = parts.path.rpartition("/pay/")
    if not found or not code or "/" in code:
        return None
    return f"{parts.netloc}{head}/pay", code


def lcd_rows(frame: Frame) -> tuple[str, str, str, str]:
    """The frame as four rows of exactly 20 characters (see the module docstring)."""
    link = pay_link(frame.qr) if frame.qr else None
    if link is not None:
        # No QR code on a character LCD: the address to type and the code, on the last rows.
        first = next((part for line in frame.lines for part in textwrap.wrap(line, COLUMNS)), "")
        return (_fit(frame.title), _fit(first), _fit(link[0]), _fit(link[1]))
    fields = dict(frame.fields)
    time_value = fields.get("Time")
    if time_value is not None and len(frame.title) + len(time_value) < COLUMNS:
        title = _pair(frame.title, time_value)
    else:
        title = _fit(frame.title)
    fields_first = sorted(
        (item for item in frame.fields if item[0] != "Time"),
        # Stable: the rest keep their order.
        key=lambda item: item != frame.total and item[0] not in LCD_FIRST,
    )
    body = [_pair(label, value) for label, value in fields_first]
    if frame.code is not None:  # a receipt's link code: the row after its total
        body.insert(1 if frame.total in fields_first else 0, _pair(*frame.code))
    body += [_fit(part) for line in frame.lines for part in textwrap.wrap(line, COLUMNS) or [""]]
    body = (body + [" " * COLUMNS] * (ROWS - 1))[: ROWS - 1]
    return (title, body[0], body[1], body[2])


class Hd44780Lcd:
    """Implements `hardware.ports.Display` on a 20x4 HD44780 behind a PCF8574 (I2C)."""

    def __init__(
        self,
        settings: LcdSettings,
        *,
        open_bus: Callable[[int], SMBusLike] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._open_bus = open_bus or _smbus2
        self._sleep = sleep
        self._bus: SMBusLike | None = None
        self._shown: list[str | None] = [None] * ROWS  # what the DDRAM holds, per row
        self._light = BACKLIGHT if settings.backlight else 0
        self._failing = False

    # -- the port -----------------------------------------------------------------------------

    def show(self, frame: Frame) -> None:
        rows = lcd_rows(frame)
        try:
            if self._bus is None:
                self._bus = self._open_bus(self.settings.bus)
                self._init()
            for index, row in enumerate(rows):
                if self._shown[index] != row:
                    self._command(SET_DDRAM | ROW_ADDRESSES[index])
                    for char in row:
                        self._write(lcd_char(char), RS)
                    self._shown[index] = row
        except OSError as exc:
            if not self._failing:
                log.error(
                    "event=lcd_failed bus=%d address=0x%02X error=%s",
                    self.settings.bus,
                    self.settings.address,
                    exc,
                )
            self._failing = True
            self._drop()
            return
        if self._failing:
            log.info("event=lcd_recovered address=0x%02X", self.settings.address)
            self._failing = False

    def close(self) -> None:
        self._drop()

    # -- the controller ----------------------------------------------------------------------

    def _init(self) -> None:
        self._shown = [None] * ROWS
        self._port(self._light)  # all lines low, E low
        self._nibble(0x3, 0)
        self._sleep(POWER_ON_WAIT_S)
        self._nibble(0x3, 0)
        self._nibble(0x3, 0)
        self._nibble(0x2, 0)  # from here on: 4-bit
        for instruction in (FUNCTION_4BIT_2LINE, DISPLAY_OFF, CLEAR):
            self._command(instruction)
        self._sleep(CLEAR_WAIT_S)
        self._command(ENTRY_MODE_INCREMENT)
        self._command(DISPLAY_ON)

    def _command(self, value: int) -> None:
        self._write(value, 0)

    def _write(self, value: int, mode: int) -> None:
        self._nibble(value >> 4, mode)
        self._nibble(value & 0x0F, mode)

    def _nibble(self, nibble: int, mode: int) -> None:
        data = (nibble << 4) | mode | self._light  # RW stays low
        self._port(data | EN)
        self._port(data)  # falling edge of E latches the nibble

    def _port(self, value: int) -> None:
        assert self._bus is not None
        self._bus.write_byte(self.settings.address, value)

    def _drop(self) -> None:
        bus, self._bus = self._bus, None
        self._shown = [None] * ROWS
        if bus is not None:
            try:
                bus.close()
            except OSError as exc:
                log.info("event=lcd_close_failed error=%s", exc)


def _smbus2(bus: int) -> Any:
    import smbus2  # noqa: PLC0415 - only on a kiosk with an LCD

    return smbus2.SMBus(bus)
