"""`ev-terminal demo` on a pseudo-terminal, typed at human speed: the README's walk-through
completes at the default speed, the typed line survives redraws, the receipt's whole link is
shown and kept, typos name the nearest card, and Ctrl-C leaves cleanly.

The terminal is emulated with pyte (a VT100 emulator), so the test reads what a person would
see, not the escape sequences prompt_toolkit chose to get there."""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

REPO = Path(__file__).resolve().parents[2]
COLS, ROWS = 100, 40
KEY_DELAY_S = 0.12  # a steady typist: about 8 keys a second
THINK_S = 1.5  # reading the screen before the next command
LINK = re.compile(r"receipt link: (http://127\.0\.0\.1:\d+/receipts/([A-Z0-9]+))\s*$")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def readme_walkthrough() -> list[str]:
    """The commands of the README's "typed by hand" block, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("A first session, typed by hand:", 1)[1].split("```text", 1)[1]
    block = block.split("```", 1)[0]
    commands = [line[2:].split("#", 1)[0].strip() for line in block.splitlines()]
    return [c for c in commands if c]


class Terminal:
    """A demo process on a pty, its output fed to an emulated screen."""

    def __init__(self, data: Path) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "launcher.cli", "demo", "--config", "deploy/terminal.toml", "--data", str(data)],
            cwd=str(REPO),
            dimensions=(ROWS, COLS),
            env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "LANG": "C.UTF-8"},
        )

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.child.isalive():
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return
            self.raw += data
            self.stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def until(self, what: str, check: Callable[[list[str]], bool], timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if check(self.lines()):
                return
            self.pump(0.1)
        pytest.fail(f"{what}: not seen within {timeout} s; screen:\n" + "\n".join(self.lines()))

    def type(self, text: str, enter: bool = True) -> None:
        for ch in text:
            self.child.send(ch)
            self.pump(KEY_DELAY_S)
        if enter:
            self.child.send("\r")
            self.pump(KEY_DELAY_S)

    def status(self) -> str:
        """The status line (drawn in reverse video; it wraps onto a second line if long)."""
        rows = [self.lines()[y] for y in range(ROWS) if self.screen.buffer[y][0].reverse]
        return " ".join(row.strip() for row in rows)

    def prompt(self) -> str:
        return next(line for line in reversed(self.lines()) if line.startswith(">"))


def _shows(text: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(text in line for line in lines)


def _phase(t: Terminal, words: str) -> None:
    t.until(f"status {words!r}", lambda _: f"| {words} |" in t.status())


def test_readme_walkthrough_typed_by_hand(tmp_path: Path) -> None:
    steps = readme_walkthrough()
    assert steps == ["tap visa", "plug", "ev charge", "tap visa", "unplug"]
    t = Terminal(tmp_path / "demo")
    try:
        t.until("the idle screen", lambda _: "| idle |" in t.status(), timeout=60)
        assert "time x4" in t.status()  # the default speed the README promises

        t.type("tap vias")
        t.until("typo help", _shows("no card 'vias'; did you mean 'visa'?"))

        # The walk-through, each command after a moment's reading, as a newcomer types it.
        expected_after = ["awaiting vehicle", "awaiting vehicle", "charging", None, None]
        for step, phase in zip(steps, expected_after, strict=True):
            if step == "tap visa" and phase is None:
                # "after a few seconds": charging runs, redrawn several times a second,
                # while a command is half typed; the prompt keeps it.
                t.type("sta", enter=False)
                t.pump(3)
                assert t.prompt() == "> sta"
                t.type("tus")
                t.until("status rows", _shows("contactor  closed (commanded)"))
            t.pump(THINK_S)
            t.type(step)
            if phase is not None:
                _phase(t, phase)
        t.until("the receipt's link", lambda lines: any(LINK.search(x) for x in lines))
        links = [m for line in t.lines() if (m := LINK.search(line))]
        url, receipt_id = links[0].group(1), links[0].group(2)
        assert any(f"Receipt {receipt_id}" in line for line in t.lines())  # on the screen too
        with urllib.request.urlopen(url, timeout=10) as page:  # the whole link works
            assert page.status == 200
            assert receipt_id in page.read().decode()

        # The link stays after the receipt screen has gone (receipt_time 60 s = 15 s at x4).
        _phase(t, "idle")
        assert any(LINK.search(line) and url in line for line in t.lines())

        t.child.sendcontrol("c")
        t.pump(10)
        t.child.expect(pexpect.EOF, timeout=10)
        t.child.close()
        assert t.child.exitstatus == 0
        assert b"Traceback" not in t.raw
        assert f"last receipt: {url}".encode() in t.raw
        assert b"demo stopped" in t.raw
    finally:
        t.child.close(force=True)


def test_the_next_session_drops_the_old_link(tmp_path: Path) -> None:
    t = Terminal(tmp_path / "demo")
    try:
        t.until("the idle screen", lambda _: "| idle |" in t.status(), timeout=60)
        for step in ("tap visa", "plug", "ev charge"):
            t.type(step)
        _phase(t, "charging")
        t.pump(2)
        t.type("unplug")
        t.until("the receipt's link", lambda lines: any(LINK.search(x) for x in lines))
        t.type("tap mastercard")
        _phase(t, "awaiting vehicle")
        assert not any(LINK.search(line) for line in t.lines())  # the pane is gone
        t.type("quit")
        t.child.expect(pexpect.EOF, timeout=15)
        t.child.close()
        assert t.child.exitstatus == 0
    finally:
        t.child.close(force=True)
