"""The command line's argument parser: a user error is one line naming the problem, exit 2.

argparse's own `error` prints the whole usage block before the message; an operator who typed
one wrong word needs the message, and `--help` has the rest.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

EXIT_USAGE = 2  # the argparse and BSD sysexits convention for a usage error


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line: `PROG: PROBLEM (see PROG --help)`.

    Subparsers made with `add_subparsers` are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def fail(self, message: str) -> NoReturn:
        """A problem found after parsing (a file that is not there), reported the same way."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def number_in(low: float, high: float, *, low_open: bool = True) -> Callable[[str], float]:
    """An argparse `type` for a number in (low, high] (or [low, high] with `low_open=False`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        if too_low or value > high or math.isnan(value):
            bound = "more than" if low_open else "at least"
            raise argparse.ArgumentTypeError(f"{text} must be {bound} {low:g} and at most {high:g}")
        return value

    return parse


def integer_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type` for a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be from {low} to {high}")
        return value

    return parse
