"""Line editing as screen, minicom and PuTTY send it."""

from __future__ import annotations

from terminal.console.line import Interrupt, Line, LineEditor


def test_each_emulators_enter_ends_the_line_once() -> None:
    editor = LineEditor()
    for enter in (b"\r", b"\n", b"\r\n"):
        echo, inputs = editor.feed(b"status" + enter)
        assert inputs == [Line("status")]
        assert echo == b"status\r\n"


def test_backspace_and_delete_erase_one_character() -> None:
    echo, inputs = LineEditor().feed(b"statx\x08us\x7f\x7fus\r")
    assert inputs == [Line("status")]
    assert echo.count(b"\b \b") == 3


def test_ctrl_u_erases_the_line_and_ctrl_w_a_word() -> None:
    _, inputs = LineEditor().feed(b"relay tezt\x17test\r")
    assert inputs == [Line("relay test")]
    echo, inputs = LineEditor().feed(b"reboot\x15log 5\r")
    assert inputs == [Line("log 5")]
    assert echo.startswith(b"reboot" + b"\b \b" * 6)


def test_ctrl_c_abandons_the_line() -> None:
    echo, inputs = LineEditor().feed(b"reboot\x03")
    assert inputs == [Interrupt()]
    assert echo.endswith(b"^C\r\n")
    _, inputs = LineEditor().feed(b"\x03help\r")
    assert inputs == [Interrupt(), Line("help")]


def test_arrow_keys_and_other_controls_are_swallowed() -> None:
    echo, inputs = LineEditor().feed(b"\x1b[Ame\x1bOBter\x1b[1;5C\x07\r")
    assert inputs == [Line("meter")]
    assert echo == b"meter\r\n"


def test_secret_mode_echoes_nothing_but_the_line_end() -> None:
    editor = LineEditor()
    editor.secret = True
    echo, inputs = editor.feed(b"12345x\x7f6\r")
    assert inputs == [Line("123456")]
    assert echo == b"\r\n"


def test_a_line_is_bounded() -> None:
    _, inputs = LineEditor(max_len=8).feed(b"x" * 50 + b"\r")
    assert inputs == [Line("x" * 8)]
