"""The emulated RS-485 line (an SDM630 meter, unit 1, and an EVSE-DIN board, unit 2) in a process
of its own, driven over a `multiprocessing` pipe, so CPU work in the process under test cannot
make the devices late. Start it with a spawn context: `Process(target=serve_line, args=(conn,))`.

Commands, each answered on the pipe: first the line's port path is sent; then
("state", "A".."F") sets what the car does, ("pilot", "") answers the pilot the board shows,
("writes", "") answers and forgets the writes taken as (register, value, CLOCK_MONOTONIC time),
("stop", "") ends the process. CLOCK_MONOTONIC is one clock for every process on the machine,
so the times compare with the caller's `time.monotonic()`.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

from pymodbus.constants import ExcCodes

from hardware.emulators.modbus_devices import EmulatedEvseBoard, EmulatedSdmMeter, ModbusRtuEmulator
from hardware.ports import PilotState


class _StampedBoard(EmulatedEvseBoard):
    """The EVSE board, stamping each register write with the time it was taken."""

    def __init__(self) -> None:
        super().__init__(unit_id=2)
        self.stamped: list[tuple[int, int, float]] = []

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        result = super()._write(address, values)
        now = time.monotonic()
        self.stamped.extend((address + i, value, now) for i, value in enumerate(values))
        return result


def serve_line(conn: Connection) -> None:
    """The child process's main: serve the line until told to stop."""
    board = _StampedBoard()
    meter = EmulatedSdmMeter(unit_id=1, energy_wh=1_000_000)
    with ModbusRtuEmulator(meter, board) as line:
        conn.send(line.port)
        while True:
            command, arg = conn.recv()
            if command == "state":
                board.set_state(PilotState[arg])
                conn.send(None)
            elif command == "pilot":
                conn.send(board.pilot().value)
            elif command == "writes":
                conn.send(list(board.stamped))
                board.stamped.clear()
            else:
                conn.send(None)
                return
