"""The emulated devices in a process of their own, driven from the test or bench through proxies.

nfcpy waits 100 ms for the PN532's ACK (nfc/clf/pn53x.py `Chipset.command`), and the Modbus
drivers wait `timeout_s` for an answer. An emulator that shares the interpreter (and its GIL)
with a daemon, a gateway and a browser driver can miss those windows when the test process is
busy, and the test then sees a reader or meter fault that the device would never cause. So
`EmulatorProcess` starts a child (a `multiprocessing` spawn context: a fresh interpreter, no
threads or locks inherited) that builds the emulators, serves their lines from its own threads,
and takes commands from the parent over a pipe. The child holds nothing of the parent's, so
only CPU scheduling by the kernel is shared.

Proxies (`RemotePn532`, `RemoteSdmMeter`, `RemoteEvseBoard`) offer the emulators' test hooks
with the same names; each call is one round trip, answered after the child has done it. A card
handed to `present` is pickled into the child: it must be a module-level class (the scripted
cards are). An exception raised in the child comes back as `EmulatorError` naming it.

A device is hardware: it answers in its own time however busy the host is. On a shared machine
under load a normal process can wait longer than nfcpy's ACK window before the kernel runs it,
so the child asks for the lowest real-time priority (SCHED_RR 1, sched(7)) where it may (root,
or CAP_SYS_NICE; CI runs as root). Elsewhere it runs at the normal priority and logs that it
does. Its threads only wait on their lines, so the priority cannot starve the machine (and
the kernel's RT throttling keeps 5 % for everything else in any case).

The child ends when the parent calls `stop()`, and also when the parent dies (the pipe reaches
end of file), so a killed test leaves no emulator behind.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from hardware.emulators.modbus_devices import (
    EmulatedDevice,
    EmulatedEvseBoard,
    EmulatedSdmMeter,
    ModbusRtuEmulator,
)
from hardware.emulators.picc import Technology
from hardware.emulators.pn532 import Pn532Emulator
from hardware.ports import CardTarget, PilotState

START_TIMEOUT_S = 30.0  # a spawned interpreter imports pymodbus and nfc's frames on a busy CI box
CALL_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 5.0


class EmulatorError(RuntimeError):
    """The emulator process refused a command, failed it, or is gone."""


# -- the child ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Meter:
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Board:
    kwargs: dict[str, Any]


def _build(kind: str, spec: Any, objects: dict[int, Any], closers: list[Callable[[], None]]) -> Any:
    """Build one emulator in the child; answer what the parent needs to know of it."""
    if kind == "pn532":
        reader = Pn532Emulator(**spec).start()
        closers.append(reader.stop)
        objects[id(reader)] = reader
        return id(reader), reader.port
    if kind == "line":
        device_specs, baudrate = spec
        devices: list[EmulatedDevice] = [
            EmulatedSdmMeter(**item.kwargs)
            if isinstance(item, _Meter)
            else EmulatedEvseBoard(**item.kwargs)
            for item in device_specs
        ]
        line = ModbusRtuEmulator(*devices, baudrate=baudrate).start()
        closers.append(line.stop)
        for device in devices:
            objects[id(device)] = device
        return line.port, [id(device) for device in devices]
    raise EmulatorError(f"no emulator of kind {kind!r}")


def _as_a_device() -> None:
    """Run this process (every thread started from now on) at the lowest real-time priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except PermissionError:
        logging.getLogger(__name__).warning("event=emulators_not_realtime reason=no_permission")


def _serve(conn: Connection) -> None:
    """The child's main: build emulators and run their hooks until told to stop (or orphaned)."""
    _as_a_device()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where is it stuck?
    objects: dict[int, Any] = {}
    closers: list[Callable[[], None]] = []
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            op = request[0]
            if op == "stop":
                break
            try:
                if op == "new":
                    answer: Any = _build(request[1], request[2], objects, closers)
                elif op == "call":
                    _, handle, name, args, kwargs = request
                    answer = getattr(objects[handle], name)(*args, **kwargs)
                elif op == "get":
                    answer = getattr(objects[request[1]], request[2])
                else:
                    raise EmulatorError(f"unknown request {op!r}")
                conn.send(("ok", answer))
            except Exception as error:  # sent back to the caller, who raises it
                conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        for close in reversed(closers):
            close()
        with contextlib.suppress(OSError):
            conn.send(("ok", None))


# -- the parent -----------------------------------------------------------------------------------


class EmulatorProcess:
    """A child process holding emulated devices. Use as a context manager, or `start`/`stop`."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child,), name="device emulators", daemon=True
        )
        self._child_end = child
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> EmulatorProcess:
        self._process.start()
        self._child_end.close()  # the child's copy alone keeps it open: EOF when the child dies
        return self

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(EmulatorError):
                self._request(("stop",), timeout=JOIN_TIMEOUT_S)
        self._process.join(JOIN_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(JOIN_TIMEOUT_S)
        self._conn.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def pn532(self, **options: Any) -> RemotePn532:
        """A PN532 on a pty of its own; `options` are `Pn532Emulator`'s keyword arguments."""
        handle, port = self._request(("new", "pn532", options), timeout=START_TIMEOUT_S)
        return RemotePn532(self, handle, port)

    def modbus_line(
        self,
        *,
        meter: dict[str, Any] | None = None,
        board: dict[str, Any] | None = None,
        baudrate: int = 38400,
    ) -> RemoteLine:
        """An RS-485 line with an SDM meter and/or an EVSE-DIN board, keyword arguments as for
        `EmulatedSdmMeter` and `EmulatedEvseBoard` (`state` as a `PilotState`)."""
        specs: list[_Meter | _Board] = []
        if meter is not None:
            specs.append(_Meter(meter))
        if board is not None:
            specs.append(_Board(board))
        port, handles = self._request(("new", "line", (specs, baudrate)), timeout=START_TIMEOUT_S)
        remote_meter = RemoteSdmMeter(self, handles[0]) if meter is not None else None
        remote_board = RemoteEvseBoard(self, handles[-1]) if board is not None else None
        return RemoteLine(port=port, meter=remote_meter, board=remote_board)

    def call(self, handle: int, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._request(("call", handle, name, args, kwargs), timeout=CALL_TIMEOUT_S)

    def get(self, handle: int, name: str) -> Any:
        return self._request(("get", handle, name), timeout=CALL_TIMEOUT_S)

    def _request(self, request: tuple[Any, ...], *, timeout: float) -> Any:
        with self._lock:
            try:
                self._conn.send(request)
                if not self._conn.poll(timeout):
                    raise EmulatorError(f"the emulator process did not answer {request[0]!r}")
                status, answer = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as error:
                raise EmulatorError(f"the emulator process is gone: {error}") from error
        if status != "ok":
            raise EmulatorError(answer)
        return answer


class _Remote:
    def __init__(self, host: EmulatorProcess, handle: int) -> None:
        self._host, self._handle = host, handle

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._host.call(self._handle, name, *args, **kwargs)

    def _get(self, name: str) -> Any:
        return self._host.get(self._handle, name)


class RemotePn532(_Remote):
    """`Pn532Emulator`'s hooks, run in the emulator process."""

    def __init__(self, host: EmulatorProcess, handle: int, port: str) -> None:
        super().__init__(host, handle)
        self.port = port

    def present(
        self,
        card: CardTarget,
        *,
        technology: Technology = Technology.A,
        sel_res: int | None = None,
    ) -> None:
        self._call("present_only", card, technology=technology, sel_res=sel_res)

    def remove(self) -> None:
        self._call("remove")

    def go_silent(self) -> None:
        self._call("go_silent")

    def resume(self) -> None:
        self._call("resume")

    def unplug(self) -> None:
        self._call("unplug")

    def replug(self) -> None:
        self._call("replug")

    @property
    def card_errors(self) -> list[str]:
        """The test cards' unexpected exceptions, as text (they need not pickle)."""
        return [repr(error) for error in self._get("card_errors")]

    @property
    def card_in_field(self) -> bool:
        return bool(self._get("card_in_field"))

    @property
    def card_commands(self) -> list[bytes]:
        return list(self._get("card_commands"))

    @property
    def commands(self) -> Counter[int]:
        return Counter(self._get("commands"))


class RemoteSdmMeter(_Remote):
    """`EmulatedSdmMeter`'s hooks, run in the emulator process."""

    def set_energy_wh(self, wh: int) -> None:
        self._call("set_energy_wh", wh)

    def set_energy_kwh(self, kwh: float) -> None:
        self._call("set_energy_kwh", kwh)

    def set_power_w(self, watts: float) -> None:
        self._call("set_power_w", watts)

    def go_silent(self) -> None:
        self._call("go_silent")

    def resume(self) -> None:
        self._call("resume")

    def corrupt_crc(self, frames: int) -> None:
        self._call("corrupt_crc", frames)

    @property
    def requests(self) -> int:
        return int(self._get("requests"))


class RemoteEvseBoard(_Remote):
    """`EmulatedEvseBoard`'s hooks, run in the emulator process."""

    def set_state(self, state: PilotState) -> None:
        self._call("set_state", state)

    def set_raw_state(self, value: int) -> None:
        self._call("set_raw_state", value)

    def go_silent(self) -> None:
        self._call("go_silent")

    def resume(self) -> None:
        self._call("resume")

    def pilot(self) -> PilotState:
        answer = self._call("pilot")
        assert isinstance(answer, PilotState)
        return answer

    @property
    def pwm_on(self) -> bool:
        return bool(self._get("pwm_on"))

    @property
    def current_a(self) -> int:
        return int(self._get("current_a"))

    @property
    def writes(self) -> list[tuple[int, int]]:
        return list(self._get("writes"))

    def take_stamped_writes(self) -> list[tuple[int, int, float]]:
        """Writes taken since the last call, as (register, value, CLOCK_MONOTONIC time)."""
        return list(self._call("take_stamped_writes"))


@dataclass(frozen=True, slots=True)
class RemoteLine:
    """An emulated RS-485 line in the emulator process: the port the driver opens, and proxies
    for the devices on it."""

    port: str
    meter: RemoteSdmMeter | None
    board: RemoteEvseBoard | None


__all__ = [
    "EmulatorError",
    "EmulatorProcess",
    "RemoteEvseBoard",
    "RemoteLine",
    "RemotePn532",
    "RemoteSdmMeter",
]
