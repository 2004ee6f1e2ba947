"""The emulated devices in a process of their own (`hardware/emulators/remote.py`): the real
drivers read them across the process boundary, their hooks act there, an error in the child
comes back named, and the child never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.backoff import Backoff
from drivers.modbus_meter import ModbusMeter, ModbusMeterSettings
from drivers.nfc_reader import NfcReader
from drivers.vehicle_link import EvseDinLink, EvseDinSettings
from hardware.emulators.pn532 import Cmd
from hardware.emulators.remote import EmulatorError, EmulatorProcess
from hardware.ports import MeterFault, PilotState
from hardware.sim.card_script import load_named

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0


@pytest.fixture(scope="module")
def emulators() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as process:
        yield process


def test_the_emulators_run_in_another_process(emulators: EmulatorProcess) -> None:
    assert emulators.pid is not None
    assert emulators.pid != os.getpid()
    assert Path(f"/proc/{emulators.pid}/status").exists()


def test_nfcpy_reads_a_card_presented_through_the_proxy(emulators: EmulatorProcess) -> None:
    emulator = emulators.pn532()
    reader = NfcReader(emulator.port, backoff=Backoff(initial_s=0.05, maximum_s=0.2))
    try:
        card = load_named("visa").card()
        emulator.present(card)
        assert emulator.card_in_field
        target = reader.poll(WAIT_S)
        assert target is not None
        assert target.uid == card.uid
        assert emulator.commands[Cmd.IN_LIST_PASSIVE_TARGET] >= 1
        emulator.remove()
        assert not emulator.card_in_field
        assert emulator.card_errors == []
    finally:
        reader.close()


def test_meter_and_board_hooks_act_in_the_emulator_process(emulators: EmulatorProcess) -> None:
    # Two lines: a driver opens its port exclusively (the pi wiring shares one bus per line).
    meter_line = emulators.modbus_line(meter={"unit_id": 1, "energy_wh": 5_000})
    line = emulators.modbus_line(board={"unit_id": 2, "state": PilotState.B})
    assert meter_line.meter is not None and line.board is not None
    meter = ModbusMeter(ModbusMeterSettings(port=meter_line.port, baudrate=38400, timeout_s=0.5))
    link = EvseDinLink(EvseDinSettings(port=line.port, unit_id=2, baudrate=38400, timeout_s=0.5))
    try:
        assert meter.read().energy_wh == 5_000
        meter_line.meter.set_energy_wh(6_250)
        assert meter.read().energy_wh == 6_250
        assert link.state() is PilotState.B
        link.offer(10)
        assert line.board.pwm_on
        assert line.board.current_a == 10
        line.board.set_state(PilotState.C)
        assert link.wait_change(WAIT_S) is PilotState.C
        link.withdraw()
        assert line.board.pilot() is PilotState.B  # the car answers the PWM going off
        assert [r for r, _, _ in line.board.take_stamped_writes()] == [1000, 1004, 1004]
        assert line.board.take_stamped_writes() == []
        meter_line.meter.go_silent()
        with pytest.raises(MeterFault):
            meter.read()
    finally:
        meter.close()
        link.close()


def test_an_error_in_the_emulator_process_comes_back_named(emulators: EmulatorProcess) -> None:
    with pytest.raises(EmulatorError, match=r"ValueError: unit_id must be 1\.\.247"):
        emulators.modbus_line(board={"unit_id": 0})
    line = emulators.modbus_line(board={"unit_id": 9})
    assert line.board is not None
    line.board.set_state(PilotState.A)  # the process still serves after the error


def test_the_emulator_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from hardware.emulators.remote import EmulatorProcess

        if __name__ == "__main__":
            process = EmulatorProcess().start()
            process.pn532()
            print(process.pid, flush=True)
            time.sleep(60)
        """
    )
    (tmp_path / "parent.py").write_text(script, encoding="utf-8")
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while _alive(child):
        assert time.monotonic() < deadline, "the emulator process outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a dead child of a dead parent waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
