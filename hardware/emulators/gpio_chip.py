"""A GPIO chip whose line levels outlive the process that drove them, for tests and benches.

Raspberry Pi OS (Bookworm, without `dtparam=strict_gpiod`) keeps an output line at the level
its process last set when that process exits, however it exits: a SIGKILL, an OOM kill or a
crash leaves the contactor relay closed until something drives the line again. gpiozero's
`MockFactory` cannot show that (its pins live and die with the process), so this factory keeps
each line's level in a file of its own in a directory (`gpio17` holds "1" or "0"):

- an output writes its level at every change, and keeps it when the process dies;
- an output given back (`close`, the pin made an input again) reads as the board's pull-down,
  low, as the relay output is wired (see drivers/gpio.py);
- an input reads the file when one is there (written by the test rig: the contactor's
  auxiliary contact, a fault contact), else its pull. Edges on inputs are not emulated.

The directory comes from `EV_TERMINAL_GPIO_CHIP` (the factory is built by name, as the pi
backend builds every factory, so a daemon in a subprocess gets it from its environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

CHIP_DIR_ENV = "EV_TERMINAL_GPIO_CHIP"


def line_path(chip_dir: Path, pin: int) -> Path:
    """The file that holds BCM line `pin`'s level."""
    return chip_dir / f"gpio{pin}"


def read_line(chip_dir: Path, pin: int) -> bool | None:
    """The level last driven on line `pin` (None: never driven, nor set by the rig)."""
    try:
        return line_path(chip_dir, pin).read_text(encoding="ascii").strip() == "1"
    except FileNotFoundError:
        return None


def write_line(chip_dir: Path, pin: int, high: bool) -> None:
    """Set line `pin`'s level, atomically (the rig's side, or an output's)."""
    path = line_path(chip_dir, pin)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("1" if high else "0", encoding="ascii")
    os.replace(tmp, path)


class LatchedPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock pin backed by its line file (see the module docstring)."""

    def __init__(self, factory: LatchedChipFactory, info: Any) -> None:
        self._chip_dir = factory.chip_dir
        self._number = int(info.name.removeprefix("GPIO"))
        super().__init__(factory, info)

    def _get_state(self) -> bool:
        if self._function == "input":
            level = read_line(self._chip_dir, self._number)
            if level is not None:
                return level
        return bool(self._state)

    def _set_function(self, value: str) -> None:
        was_output = self._function == "output"
        super()._set_function(value)
        if value == "output":
            write_line(self._chip_dir, self._number, bool(self._state))
        elif was_output:
            write_line(self._chip_dir, self._number, False)  # released: the pull-down

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if self._function == "output":
            write_line(self._chip_dir, self._number, value)
        return changed


class LatchedChipFactory(MockFactory):  # type: ignore[misc]  # gpiozero is untyped
    """gpiozero's mock factory on a `LatchedPin` chip in `chip_dir` (default: from
    `EV_TERMINAL_GPIO_CHIP`)."""

    def __init__(self, chip_dir: Path | None = None) -> None:
        if chip_dir is None:
            env = os.environ.get(CHIP_DIR_ENV)
            if not env:
                raise RuntimeError(f"{CHIP_DIR_ENV} must name the emulated chip's directory")
            chip_dir = Path(env)
        if not chip_dir.is_dir():
            raise RuntimeError(f"emulated GPIO chip {chip_dir}: not a directory")
        self.chip_dir = chip_dir
        super().__init__(pin_class=LatchedPin)
