"""The HD44780 20x4 LCD driver against an emulated PCF8574 + HD44780 on a fake I2C bus."""

from __future__ import annotations

import logging
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from drivers.display_lcd import Hd44780Lcd, LcdSettings, lcd_char, lcd_rows, pay_link
from hardware.ports import Frame
from terminal.core import screens
from terminal.core.screens import frame_for
from terminal.i18n import Translator
from tests.drivers.fake_lcd import FakeLcdBus
from tests.drivers.screens import example_frames, example_screens


def make_lcd(bus: FakeLcdBus, address: int = 0x27) -> Hd44780Lcd:
    def open_bus(number: int) -> FakeLcdBus:
        assert number == 1
        bus.closed = False
        return bus

    return Hd44780Lcd(LcdSettings(address=address), open_bus=open_bus, sleep=lambda _s: None)


def frame(name: str) -> Frame:
    return next(f for f in example_frames() if f.name == name)


def test_init_puts_the_controller_in_4bit_two_line_mode_display_on() -> None:
    bus = FakeLcdBus()
    make_lcd(bus).show(frame("idle"))
    assert bus.four_bit
    assert bus.two_line
    assert bus.display_on
    assert bus.backlight
    assert bus.increment


def test_every_screen_fits_four_rows_of_twenty() -> None:
    for f in example_frames():
        rows = lcd_rows(f)
        assert len(rows) == 4
        assert all(len(row) == 20 for row in rows), f.name


def test_charging_screen_on_the_lcd() -> None:
    bus = FakeLcdBus()
    make_lcd(bus).show(frame("charging"))
    assert bus.rows() == [
        "Charging     1:07:01",
        "Energy     12.34 kWh",
        "Cost        4.81 EUR",
        "Power        11.0 kW",
    ]


def test_idle_shows_the_price() -> None:
    bus = FakeLcdBus()
    make_lcd(bus).show(frame("idle"))
    assert bus.rows() == [
        "Welcome             ",
        "0.39 EUR per kWh    ",
        "incl. 19% VAT       ",
        "Tap your card, then ",
    ]


def test_receipt_shows_id_and_total_instead_of_the_qr_code() -> None:
    rows = lcd_rows(frame("receipt"))
    assert rows == (
        "Thank you           ",
        "Total       4.81 EUR",  # 12.345 kWh at the 0.39 EUR shown
        "Energy     12.34 kWh",
        "Card  VISA **** 0010",
    )


def test_text_lines_are_word_wrapped() -> None:
    assert lcd_rows(frame("declined"))[1:] == (
        "The payment was     ",
        "declined.           ",
        "Please try another  ",
    )


def test_only_changed_rows_are_rewritten() -> None:
    bus = FakeLcdBus()
    lcd = make_lcd(bus)
    lcd.show(frame("charging"))
    before = bus.writes
    lcd.show(frame("charging"))
    assert bus.writes == before  # nothing changed, nothing sent
    f = frame("charging")
    fields = tuple((k, "12.35 kWh" if k == "Energy" else v) for k, v in f.fields)
    lcd.show(Frame(name=f.name, title=f.title, lines=f.lines, fields=fields, tone=f.tone))
    # one DDRAM address + 20 characters, two nibbles each, two writes per nibble
    assert bus.writes - before == 21 * 2 * 2
    assert bus.rows()[1] == "Energy     12.35 kWh"


def test_init_resynchronises_a_controller_left_in_4bit_mode_mid_byte() -> None:
    bus = FakeLcdBus(four_bit=True)
    bus.pending = 0x5  # the previous daemon stopped between two nibbles
    make_lcd(bus).show(frame("idle"))
    assert bus.rows()[0] == "Welcome             "
    assert bus.four_bit


def test_a_missing_lcd_is_logged_not_raised_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = FakeLcdBus()
    lcd = make_lcd(bus)
    bus.unplugged = True
    with caplog.at_level(logging.ERROR, logger="drivers.display_lcd"):
        lcd.show(frame("idle"))
        lcd.show(frame("authorizing"))
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "lcd_failed" in r.message)
    ) == 1  # one error per outage, not one per frame
    assert bus.closed
    bus.unplugged = False
    bus.ddram[:] = b"#" * 0x80  # a fresh module shows garbage until initialised
    lcd.show(frame("charging"))
    assert bus.rows()[0] == "Charging     1:07:01"


def test_wrong_address_is_an_i2c_error_handled_like_a_missing_lcd() -> None:
    bus = FakeLcdBus(address=0x3F)
    make_lcd(bus, address=0x27).show(frame("idle"))
    assert bus.writes == 0


def test_characters_outside_the_rom_become_ascii() -> None:
    assert lcd_char("A") == ord("A")
    assert lcd_char("é") == ord("e")
    assert lcd_char("ä") == 0xE1
    assert lcd_char("€") == ord("E")
    assert lcd_char("\\") == ord("/")
    assert lcd_char("☃") == ord("?")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"bus": -1}, "hardware.display.bus"), ({"address": 0x80}, "hardware.display.address")],
)
def test_settings_name_the_key(kwargs: dict[str, int], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        LcdSettings(**kwargs)  # type: ignore[arg-type]


def test_a_receipt_in_german_shows_its_total_first() -> None:
    receipt = next(s for s in example_screens() if s.__class__.__name__ == "Receipt")
    rows = lcd_rows(frame_for(receipt, Translator("de", ZoneInfo("Europe/Berlin"))))
    assert rows[:3] == ("Vielen Dank         ", "Gesamt      4,81 EUR", "Energie    12,34 kWh")


def test_a_receipts_link_code_shows_after_its_total_in_any_language() -> None:
    receipt = next(s for s in example_screens() if s.__class__.__name__ == "Receipt")
    coded = replace(receipt, link_code="K7Q29MXD")
    assert lcd_rows(frame_for(coded))[1:3] == ("Total       4.81 EUR", "Link code  K7Q2-9MXD")
    german = lcd_rows(frame_for(coded, Translator("de", ZoneInfo("Europe/Berlin"))))
    assert german[1:3] == ("Gesamt      4,81 EUR", "Verknüpfun K7Q2-9MXD")


def test_a_pay_by_phone_code_shows_as_the_address_to_type_and_the_code() -> None:
    """A character LCD cannot draw the QR code: the short address and the one-time code."""
    idle = replace(example_screens()[0], pay_url="https://ev.example.org/pay/Xq3_k9LmZ-a1B2c3")
    bus = FakeLcdBus()
    make_lcd(bus).show(frame_for(idle))
    assert bus.rows() == [
        "Welcome             ",
        "0.39 EUR per kWh    ",
        "ev.example.org/pay  ",
        "Xq3_k9LmZ-a1B2c3    ",
    ]
    declined = lcd_rows(
        frame_for(screens.Declined(reason="", pay_url="https://ev.example.org/pay/C0de"))
    )
    assert declined == (
        "Declined            ",
        "The payment was     ",
        "ev.example.org/pay  ",
        "C0de                ",
    )


def test_a_receipt_link_is_not_taken_for_a_pay_code() -> None:
    assert lcd_rows(frame("receipt"))[0].startswith("Thank you")
    assert pay_link("https://ev.example.org/receipts/R-1") is None
    assert pay_link("https://ev.example.org/gw/pay/abc") == ("ev.example.org/gw/pay", "abc")
