"""The demo's commands: one table with help text, and a parser that names the problem with a
typed line and the nearest card, command or word meant (`tap vias` -> "no card 'vias'; did
you mean 'visa'?"). Pure: what a command does is `launcher.demo`'s business."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Faults the demo can raise by name: the fault inputs a kiosk wires (RCD trip, emergency stop)
# and the simulated devices' own failures (`simulate.DEVICE_FAULTS` act on the device too).
FAULTS = ("rcd", "estop", "meter", "reader", "contactor_welded")


@dataclass(frozen=True, slots=True)
class Verb:
    """One command: its name, usage and help; the words it takes (`choices`, called `noun` in
    a message) or a card."""

    name: str
    usage: str
    help: str
    choices: tuple[str, ...] = ()
    noun: str = ""
    takes_card: bool = False


VERBS: tuple[Verb, ...] = (
    Verb("tap", "tap CARD", "present a card or phone to the reader", takes_card=True),
    Verb("remove", "remove", "take the card away from the reader"),
    Verb("plug", "plug", "plug the cable into the car"),
    Verb("unplug", "unplug", "unplug the cable"),
    Verb(
        "ev",
        "ev charge|pause|done",
        "what the car asks for",
        ("charge", "pause", "done"),
        "car request",
    ),
    Verb("fault", "fault NAME", "raise a fault: " + ", ".join(FAULTS), FAULTS, "fault"),
    Verb("clear", "clear NAME", "clear a fault", FAULTS, "fault"),
    Verb("gateway", "gateway down|up", "cut or restore the link", ("down", "up"), "link state"),
    Verb("oos", "oos on|off", "out of service, or back in", ("on", "off"), "setting"),
    Verb("status", "status", "what the kiosk is doing"),
    Verb("help", "help", "this list"),
    Verb("quit", "quit", "stop the demo (also Ctrl-C or Ctrl-D)"),
)
_BY_NAME = {v.name: v for v in VERBS}
_ALIASES = {"exit": "quit", "?": "help"}


@dataclass(frozen=True, slots=True)
class Command:
    """A valid typed line: the verb and its one argument, if it takes one."""

    verb: str
    arg: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a typed line, in one sentence for the person typing."""

    message: str


def help_text(cards: Iterable[str]) -> list[str]:
    """The help lines: every command with its usage, then the cards."""
    width = max(len(v.usage) for v in VERBS)
    lines = [f"  {v.usage:<{width}}  {v.help}" for v in VERBS]
    lines.append("  cards: " + ", ".join(sorted(cards)))
    return lines


def _nearest(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown(kind: str, word: str, options: Iterable[str], fallback: str) -> Problem:
    near = _nearest(word, options)
    if near is not None:
        return Problem(f"no {kind} {word!r}; did you mean {near!r}?")
    return Problem(f"no {kind} {word!r}; {fallback}")


def parse(line: str, cards: Iterable[str]) -> Command | Problem | None:
    """The command a typed line asks for, a Problem saying what is wrong, or None (blank)."""
    words = line.split()
    if not words:
        return None
    name, args = words[0].lower(), words[1:]
    name = _ALIASES.get(name, name)
    verb = _BY_NAME.get(name)
    if verb is None:
        return _unknown("command", name, _BY_NAME, "type help")
    card_names = sorted(cards)
    if verb.takes_card:
        if len(args) != 1:
            return Problem(f"{verb.usage}: name one card ({', '.join(card_names)})")
        card = args[0].lower()
        if card not in card_names:
            return _unknown("card", card, card_names, "cards: " + ", ".join(card_names))
        return Command(verb.name, card)
    if verb.choices:
        if len(args) != 1:
            return Problem(f"{verb.usage}: takes one of {', '.join(verb.choices)}")
        word = args[0].lower()
        if word not in verb.choices:
            return _unknown(verb.noun, word, verb.choices, "one of " + ", ".join(verb.choices))
        return Command(verb.name, word)
    if args:
        return Problem(f"{verb.name} takes nothing after it")
    return Command(verb.name)
