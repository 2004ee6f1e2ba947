"""A stand-in for the `lgpio` module (lg 0.2, https://abyz.me.uk/lg/py_lgpio.html) for a PC
with no GPIO chip: put this directory on PYTHONPATH and gpiozero's own `LGPIOFactory` (the
"lgpio" pin factory the kiosk uses on a Pi 5) runs against it unchanged.

Only the edge we cannot run is replaced: the GPIO chip. Line levels live in this process (an
output reads back what was written; an input reads its pull). What the real library does to
the file system is kept, because that is what the unit's sandbox must allow: the first
`callback` opens lg's notification pipe, a FIFO named `.lgd-nfy<N>` made in the directory
`LG_WD` names, else in the working directory (lg's lgNotify.c; the failure under a read-only
working directory is gpiozero#1106 and lg#22). `gpiochip_open` opens nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

SET_ACTIVE_LOW = 4
SET_OPEN_DRAIN = 8
SET_OPEN_SOURCE = 16
SET_PULL_UP = 32
SET_PULL_DOWN = 64
SET_PULL_NONE = 128
SET_BIAS_PULL_UP = SET_PULL_UP
SET_BIAS_PULL_DOWN = SET_PULL_DOWN
SET_BIAS_DISABLE = SET_PULL_NONE
RISING_EDGE = 1
FALLING_EDGE = 2
BOTH_EDGES = 3
# gpio_get_mode bits (lgpio.py: GPIO_IS_OUT 2, bias pull-up 32, pull-down 64, disable 128).
_IS_OUT = 1 << 1

_lock = threading.Lock()
_lines: dict[tuple[int, int], dict[str, int]] = {}
_notify: list[str] = []  # the notification FIFO, once made


class error(Exception):
    """lgpio.error."""


def gpiochip_open(gpiochip: int) -> int:
    if not 0 <= gpiochip <= 15:
        raise error("bad gpiochip")
    return gpiochip


def gpiochip_close(handle: int) -> int:
    return 0


def _line(handle: int, gpio: int) -> dict[str, int]:
    return _lines.setdefault((handle, gpio), {"mode": 0, "level": 0, "flags": 0})


def gpio_claim_input(handle: int, gpio: int, lFlags: int = 0) -> int:
    with _lock:
        line = _line(handle, gpio)
        line["mode"], line["flags"] = 0, lFlags
        line["level"] = 1 if lFlags & SET_PULL_UP else 0
    return 0


def gpio_claim_output(handle: int, gpio: int, lFlags: int = 0, level: int = 0) -> int:
    with _lock:
        line = _line(handle, gpio)
        line["mode"], line["flags"], line["level"] = _IS_OUT, lFlags, int(bool(level))
    return 0


def gpio_claim_alert(
    handle: int, gpio: int, eFlags: int, lFlags: int = 0, notify_handle: Any = None
) -> int:
    return gpio_claim_input(handle, gpio, lFlags)


def gpio_free(handle: int, gpio: int) -> int:
    with _lock:
        _lines.pop((handle, gpio), None)
    return 0


def gpio_get_mode(handle: int, gpio: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        return line["mode"] | (line["flags"] & (SET_PULL_UP | SET_PULL_DOWN | SET_PULL_NONE))


def gpio_read(handle: int, gpio: int) -> int:
    with _lock:
        return _line(handle, gpio)["level"]


def gpio_write(handle: int, gpio: int, level: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        if not line["mode"] & _IS_OUT:
            raise error("GPIO not set as an output")
        line["level"] = int(bool(level))
    return 0


def gpio_set_debounce_micros(handle: int, gpio: int, debounce_micros: int) -> int:
    return 0


def tx_pwm(handle: int, gpio: int, pwm_frequency: float, pwm_duty_cycle: float, *_: Any) -> int:
    return 0


class _Callback:
    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def cancel(self) -> None:
        self.func = lambda *args: None


def callback(
    handle: int, gpio: int, edge: int = RISING_EDGE, func: Callable[..., Any] | None = None
) -> _Callback:
    with _lock:
        if not _notify:
            directory = os.environ.get("LG_WD") or os.getcwd()
            path = os.path.join(directory, f".lgd-nfy{os.getpid() % 1000}")
            if not os.path.exists(path):
                os.mkfifo(path, 0o600)
            _notify.append(path)
    return _Callback(func or (lambda *args: None))
