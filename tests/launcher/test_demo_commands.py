"""The demo's command parser: valid lines become commands; a typo names the nearest card,
command or word; every problem is one sentence."""

from __future__ import annotations

import pytest

from hardware.sim.card_script import load_profiles
from launcher.demo_commands import VERBS, Command, Problem, help_text, parse

CARDS = sorted(load_profiles())


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("tap visa", Command("tap", "visa")),
        ("  TAP   Visa ", Command("tap", "visa")),
        ("plug", Command("plug")),
        ("ev charge", Command("ev", "charge")),
        ("fault rcd", Command("fault", "rcd")),
        ("clear contactor_welded", Command("clear", "contactor_welded")),
        ("gateway down", Command("gateway", "down")),
        ("oos on", Command("oos", "on")),
        ("exit", Command("quit")),
        ("?", Command("help")),
    ],
)
def test_valid_lines_are_commands(line: str, command: Command) -> None:
    assert parse(line, CARDS) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tap vias", "no card 'vias'; did you mean 'visa'?"),
        ("tap mastercrad", "no card 'mastercrad'; did you mean 'mastercard'?"),
        ("tapp visa", "no command 'tapp'; did you mean 'tap'?"),
        ("stauts", "no command 'stauts'; did you mean 'status'?"),
        ("unplgu", "no command 'unplgu'; did you mean 'unplug'?"),
        ("ev chrage", "no car request 'chrage'; did you mean 'charge'?"),
        ("fault rdc", "no fault 'rdc'; did you mean 'rcd'?"),
        ("gateway dwn", "no link state 'dwn'; did you mean 'down'?"),
        ("xyzzy", "no command 'xyzzy'; type help"),
        ("plug now", "plug takes nothing after it"),
        ("ev", "ev charge|pause|done: takes one of charge, pause, done"),
    ],
)
def test_typos_name_the_nearest_word(line: str, message: str) -> None:
    assert parse(line, CARDS) == Problem(message)


def test_an_unknown_card_with_nothing_near_lists_the_cards() -> None:
    problem = parse("tap zzzz", CARDS)
    assert isinstance(problem, Problem)
    assert problem.message == "no card 'zzzz'; cards: " + ", ".join(CARDS)
    missing = parse("tap", CARDS)
    assert isinstance(missing, Problem)
    assert missing.message.startswith("tap CARD: name one card (")


def test_blank_lines_are_nothing() -> None:
    assert parse("   ", CARDS) is None


def test_help_lists_every_command_and_card() -> None:
    text = "\n".join(help_text(CARDS))
    for verb in VERBS:
        assert verb.usage in text
    assert ", ".join(CARDS) in text
