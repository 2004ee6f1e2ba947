"""An emulated NXP PN532 reader on a pseudo-terminal, so the real nfcpy driver runs in CI.

The emulator speaks the PN532 host link over HSU (UART) as the chip does (`pn532_frames`):
it acknowledges every well-formed command, answers it in a normal or extended information
frame, resends its last answer on a NACK, and ignores frames with bad checksums (the host then
sees no ACK). It implements the commands nfcpy's pn532 driver sends when it opens, polls,
exchanges and closes (nfc/clf/pn532.py, pn53x.py): Diagnose (communication line test),
GetFirmwareVersion, GetGeneralStatus, ReadRegister/WriteRegister over a CIU register file,
SetSerialBaudRate, SetParameters, SAMConfiguration,
PowerDown, RFConfiguration, InListPassiveTarget (106 kbit/s Type A and Type B),
InCommunicateThru (raw frames to the card: RATS, ISO-DEP blocks, Type B DESELECT/WUPB/ATTRIB,
Type 2 READ), InDataExchange (APDUs, with ISO-DEP run by the "firmware"), InSelect, InDeselect,
InRelease and InAutoPoll. Anything else gets the syntax error frame. The card in the field is
any `hardware.ports.CardTarget`, wrapped in `picc.Picc` for its RF behaviour.

Wiring: the emulator owns the pty master and keeps the slave open and raw, so nothing is echoed
and nothing is lost while the driver opens and closes its end. The driver opens `port`, a
symlink to the current slave (like udev's /dev/serial/by-id links), which survives
`unplug()`/`replug()` even though the pty behind it changes.

Hooks for tests: `present(card)`, `remove()`, `go_silent()`/`resume()` (the chip receives but
never answers), `unplug()`/`replug()` (a hot-unplug: the pty goes away, the link disappears,
then a fresh chip appears on the same link). One thread serves the line; `stop()` joins it with
a bounded timeout.

Timing, as the chip keeps it:
- the ACK follows a command after `ack_delay_s` (1 ms by default; nfcpy's pn532 module says the
  chip acknowledges within 15 ms and waits 100 ms for it);
- every frame takes its wire time at the line's baud rate (10 bits a byte: start, 8 data, stop);
- the RF side takes its time: an InListPassiveTarget that finds no card answers after
  MxRtyPassiveActivation + 1 unanswered attempts (RFConfiguration item 5; 0xFF, the power-on
  value, means "until a card comes": no answer until the host cancels with an ACK), of
  `PASSIVE_ATTEMPT_S` each (an estimate: one REQA/WUPA and its wait); an InCommunicateThru the
  card does not answer fails after fRetryTimeout (RFConfiguration item 2: 100 us x 2^(n-1), 0
  means no timeout);
- an ACK from the host cancels the command still being worked on (its answer is never sent);
- SetSerialBaudRate changes the chip's baud rate as soon as its answer is on the wire (115200
  after power-on; nfcpy switches to 921600 where the port allows, and the ACK it sends at the
  old speed is noise to the chip). With
  `strict_baud=True` the emulator reads the host's line speed from the pty (termios): bytes
  sent while the two speeds differ are garbage to the other side, so they are dropped.

Differences from the chip: only one card is in the field; RF exchanges with a card that answers
take no air time.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import os
import select
import shutil
import tempfile
import termios
import threading
import time
import tty
from types import TracebackType

from hardware.emulators.picc import Picc, Technology, crc_a
from hardware.emulators.pn532_frames import (
    ACK,
    SYNTAX_ERROR,
    Ack,
    BadFrame,
    Command,
    HostFrameParser,
    Nack,
    response_frame,
)
from hardware.ports import CardTarget

JOIN_TIMEOUT_S = 2.0
SELECT_TIMEOUT_S = 0.5
APDU_TIMEOUT_S = 1.0  # how long the "firmware" waits for a card during InDataExchange
ACK_DELAY_S = 0.001
EARLY_S = 0.002
PASSIVE_ATTEMPT_S = 0.005
BITS_PER_BYTE = 10  # HSU frames are 8N1: a start bit, 8 data bits, a stop bit
POWER_ON_BAUD = 115200
# SetSerialBaudRate BR byte 0..8 (UM0701-02, SetSerialBaudRate).
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)
TERMIOS_SPEEDS = {
    getattr(termios, f"B{rate}"): rate for rate in BAUD_RATES if hasattr(termios, f"B{rate}")
}
# RFConfiguration items: 2 "various timings" (RFU, ATR_RES timeout, fRetryTimeout), 5 "max
# retries" (MxRtyATR, MxRtyPSL, MxRtyPassiveActivation). Power-on values: fRetryTimeout 0Ah
# (51.2 ms), MxRtyPassiveActivation FFh (for ever).
RF_TIMINGS = 0x02
RF_MAX_RETRIES = 0x05
RETRY_FOREVER = 0xFF

# GetFirmwareVersion answer (UM0701-02 7.2.2): IC 32h (PN532), version 1.6, supports
# ISO/IEC 14443 Type A, Type B and ISO 18092 (07h) - what a PN532 v1.6 module reports.
FIRMWARE_VERSION = bytes([0x32, 0x01, 0x06, 0x07])


class Cmd(enum.IntEnum):
    """Host command codes (UM0701-02 chapter 7)."""

    DIAGNOSE = 0x00
    GET_FIRMWARE_VERSION = 0x02
    GET_GENERAL_STATUS = 0x04
    READ_REGISTER = 0x06
    WRITE_REGISTER = 0x08
    SET_SERIAL_BAUD_RATE = 0x10
    SET_PARAMETERS = 0x12
    SAM_CONFIGURATION = 0x14
    POWER_DOWN = 0x16
    RF_CONFIGURATION = 0x32
    IN_DATA_EXCHANGE = 0x40
    IN_COMMUNICATE_THRU = 0x42
    IN_DESELECT = 0x44
    IN_LIST_PASSIVE_TARGET = 0x4A
    IN_RELEASE = 0x52
    IN_SELECT = 0x54
    IN_AUTO_POLL = 0x60


# Status byte of In* answers (UM0701-02 7.1 error codes).
STATUS_OK = 0x00
STATUS_TIMEOUT = 0x01  # the target has not answered
STATUS_BAD_TARGET = 0x27  # not acceptable in the current context

# SetParameters flags (UM0701-02 7.2.9): bit 4 fAutomaticRATS.
PARAM_AUTO_RATS = 0x10
# RFConfiguration item 1 (RF field), bit 0 = field on.
RF_FIELD = 0x01
# InListPassiveTarget BrTy (UM0701-02 7.3.5): 0 = 106 kbit/s Type A, 3 = 106 kbit/s Type B.
BRTY_106A = 0
BRTY_106B = 3

# CIU registers (PN532 User Manual 8.6, PN512 register map) the host reads or writes.
CIU_TX_MODE = 0x6302
CIU_RX_MODE = 0x6303
CIU_TX_CONTROL = 0x6304
CIU_TX_AUTO = 0x6305
CIU_FIFO_DATA = 0x6339
CRC_ENABLE = 0x80  # TxMode/RxMode bit 7
FRAMING_TYPE_B = 0x03  # TxMode/RxMode bits 1..0
REQA = 0x26  # left in the FIFO when no Type A card answered (nfcpy checks for it)
RESET_REGISTERS = {CIU_TX_MODE: 0x00, CIU_RX_MODE: 0x00, CIU_TX_CONTROL: 0x80, CIU_TX_AUTO: 0x00}


class Pn532Emulator:
    """A PN532 on a pty. Use as a context manager, or `start()` and `stop()`."""

    def __init__(self, *, ack_delay_s: float = ACK_DELAY_S, strict_baud: bool = False) -> None:
        if ack_delay_s < 0:
            raise ValueError("ack_delay_s must not be negative")
        self.ack_delay_s = ack_delay_s
        self.strict_baud = strict_baud
        self._dir = tempfile.mkdtemp(prefix="pn532-")
        self.port = os.path.join(self._dir, "ttyPN532")
        self.commands: collections.Counter[int] = collections.Counter()  # received, by code
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._generation = 0
        self._silent = False
        self._picc: Picc | None = None
        self._past_errors: list[Exception] = []
        # (due, data, the baud rate the chip takes once `data` is out, if it changes)
        self._outbox: collections.deque[tuple[float, bytes, int | None]] = collections.deque()
        self._line_free_at = 0.0
        self._baud = POWER_ON_BAUD
        self._next_baud: int | None = None
        self._power_on_reset()
        self._plug()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Pn532Emulator:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="pn532-emulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
        with self._lock:
            self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Pn532Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test hooks ----------------------------------------------------------------------------

    def present(
        self,
        card: CardTarget,
        *,
        technology: Technology = Technology.A,
        sel_res: int | None = None,
        ats: bytes | None = None,
    ) -> Picc:
        """Put `card` in the field (taking away any card already there); `ats` is its own ATS
        (see `Picc`)."""
        picc = Picc(card, technology=technology, sel_res=sel_res, ats=ats)
        with self._lock:
            self._take_away()
            self._picc = picc
        return picc

    def present_only(
        self,
        card: CardTarget,
        *,
        technology: Technology = Technology.A,
        sel_res: int | None = None,
        ats: bytes | None = None,
    ) -> None:
        """`present`, answering nothing (for a caller in another process)."""
        self.present(card, technology=technology, sel_res=sel_res, ats=ats)

    def remove(self) -> None:
        """Take the card out of the field; from now on it never answers."""
        with self._lock:
            self._take_away()

    def go_silent(self) -> None:
        """The chip keeps receiving but answers nothing, not even ACK (a hung reader)."""
        with self._lock:
            self._silent = True

    def resume(self) -> None:
        with self._lock:
            self._silent = False

    def unplug(self) -> None:
        """Hot-unplug: the line breaks under the driver and the device link disappears."""
        with self._lock:
            self._unplug()
        self._wake()

    def replug(self) -> None:
        """A freshly powered chip appears on the same link (the card, if any, is still there)."""
        with self._lock:
            self._unplug()
            self._power_on_reset()
            self._plug()
        self._wake()

    @property
    def card_errors(self) -> list[Exception]:
        """Unexpected exceptions raised by the cards' `transceive` (test-card bugs)."""
        with self._lock:
            current = self._picc.errors if self._picc is not None else []
            return [*self._past_errors, *current]

    @property
    def baud(self) -> int:
        """The chip's line speed now."""
        with self._lock:
            return self._baud

    @property
    def card_in_field(self) -> bool:
        with self._lock:
            return self._picc is not None and not self._picc.gone

    @property
    def card_commands(self) -> list[bytes]:
        """The APDUs the card in the field received, in order, where it records them (the
        scripted cards' `history`); empty otherwise."""
        with self._lock:
            card = self._picc.card if self._picc is not None else None
        history: list[tuple[bytes, bytes | None]] = list(getattr(card, "history", []))
        return [command for command, _ in history]

    # -- the line ------------------------------------------------------------------------------

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._generation += 1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        os.symlink(os.ttyname(slave), self.port)

    def _unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._field_off()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\x00")

    def _serve(self) -> None:
        parser, generation = HostFrameParser(), -1
        while not self._stop.is_set():
            with self._lock:
                master = self._master
                if self._generation != generation:
                    parser, generation = HostFrameParser(), self._generation
                due = self._outbox[0][0] - EARLY_S if self._outbox else None
                wait = SELECT_TIMEOUT_S if due is None else due - time.monotonic()
            watched = [self._wake_r] if master is None else [self._wake_r, master]
            readable, _, _ = select.select(watched, [], [], min(max(wait, 0.0), SELECT_TIMEOUT_S))
            if self._wake_r in readable:
                os.read(self._wake_r, 512)
            with self._lock:
                self._flush_due()
            if master is None or master not in readable:
                continue
            with self._lock:
                if self._master != master or self._generation != generation:
                    continue  # unplugged while we waited
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not self._speeds_match():
                    continue  # sent at another speed: framing errors, nothing the chip can read
                for frame in parser.feed(data):
                    self._handle(frame)
                self._flush_due()

    def _send(self, data: bytes, *, after_s: float, then_baud: int | None = None) -> None:
        """Queue `data` to reach the host `after_s` from now plus its wire time, behind what
        the line is still carrying; `then_baud`: the speed the chip changes to after it."""
        start = max(time.monotonic() + after_s, self._line_free_at)
        self._line_free_at = start + len(data) * BITS_PER_BYTE / self._baud
        self._outbox.append((self._line_free_at, data, then_baud))

    def _flush_due(self) -> None:
        # Bytes due within the next couple of milliseconds go now: a thread woken for each of
        # them would, on a loaded machine, come back later than the chip would have sent them.
        now = time.monotonic() + EARLY_S
        while self._outbox and self._outbox[0][0] <= now:
            _, data, then_baud = self._outbox.popleft()
            if self._master is not None and self._speeds_match():
                # The master is non-blocking: if the host stopped reading, the answer is lost,
                # as bytes sent to a UART nobody reads.
                with contextlib.suppress(OSError):
                    os.write(self._master, data)
            if then_baud is not None:
                self._baud = then_baud

    def _cancel_pending(self) -> None:
        """Drop what is not on the wire yet (the command it answers was cancelled)."""
        self._outbox.clear()
        self._line_free_at = min(self._line_free_at, time.monotonic())

    def _host_baud(self) -> int | None:
        if self._slave is None:
            return None
        try:
            speed = termios.tcgetattr(self._slave)[4]
        except termios.error:
            return None
        return TERMIOS_SPEEDS.get(speed)

    def _speeds_match(self) -> bool:
        """Host and chip at one speed (always, unless `strict_baud`)."""
        return not self.strict_baud or self._host_baud() == self._baud

    # -- the chip ------------------------------------------------------------------------------

    def _power_on_reset(self) -> None:
        self._registers = dict(RESET_REGISTERS)
        self._parameters = 0x00
        self._silent = False
        self._last_answer: bytes | None = None
        self._outbox.clear()
        self._line_free_at = 0.0
        self._baud = POWER_ON_BAUD
        self._next_baud = None
        self._retry_timeout_index = 0x0A
        self._passive_retries = RETRY_FOREVER
        self._rf_time_s: float | None = 0.0
        self._field_off()

    def _field_off(self) -> None:
        self._field = False
        if self._picc is not None:
            self._picc.power_off()

    def _take_away(self) -> None:
        if self._picc is not None:
            self._picc.leave()
            self._past_errors.extend(self._picc.errors)
            self._picc = None

    def _handle(self, frame: Ack | Nack | Command | BadFrame) -> None:
        if isinstance(frame, Command):
            self.commands[frame.code] += 1
        if self._silent:
            return
        match frame:
            case Command(code=code, data=data):
                self._cancel_pending()  # one command at a time: a new one ends the last
                self._send(ACK, after_s=self.ack_delay_s)
                self._rf_time_s = 0.0
                answer = self._command(code, data)
                self._last_answer = SYNTAX_ERROR if answer is None else response_frame(code, answer)
                switch, self._next_baud = self._next_baud, None
                if self._rf_time_s is not None:  # None: the chip waits until it is cancelled
                    after = self.ack_delay_s + self._rf_time_s
                    self._send(self._last_answer, after_s=after, then_baud=switch)
            case Nack():
                if self._last_answer is not None:
                    self._send(self._last_answer, after_s=self.ack_delay_s)
            case Ack():
                self._cancel_pending()  # cancels the command in progress, if any
            case BadFrame():
                pass  # a frame the chip cannot read: no reply

    def _command(self, code: int, data: bytes) -> bytes | None:
        match code:
            case Cmd.DIAGNOSE if data:
                return self._diagnose(data)
            case Cmd.GET_FIRMWARE_VERSION:
                return FIRMWARE_VERSION
            case Cmd.GET_GENERAL_STATUS:  # Err, Field, NbTg, SAM status
                return bytes([0x00, int(self._field), 0x00, 0x00])
            case Cmd.READ_REGISTER if data and len(data) % 2 == 0:
                addresses = [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]
                return bytes(self._registers.get(address, 0x00) for address in addresses)
            case Cmd.WRITE_REGISTER if data and len(data) % 3 == 0:
                for i in range(0, len(data), 3):
                    self._registers[data[i] << 8 | data[i + 1]] = data[i + 2]
                return b""
            case Cmd.SET_SERIAL_BAUD_RATE if data and data[0] < len(BAUD_RATES):
                self._next_baud = BAUD_RATES[data[0]]
                return b""
            case Cmd.SET_PARAMETERS if data:
                self._parameters = data[0]
                return b""
            case Cmd.SAM_CONFIGURATION:
                return b""
            case Cmd.POWER_DOWN:
                self._field_off()
                return bytes([STATUS_OK])
            case Cmd.RF_CONFIGURATION if data:
                if data[0] == RF_FIELD and len(data) > 1 and not data[1] & 0x01:
                    self._field_off()
                elif data[0] == RF_TIMINGS and len(data) >= 4:
                    self._retry_timeout_index = data[3]
                elif data[0] == RF_MAX_RETRIES and len(data) >= 4:
                    self._passive_retries = data[3]
                return b""
            case Cmd.IN_LIST_PASSIVE_TARGET if len(data) >= 2:
                return self._in_list_passive_target(data[1], data[2:])
            case Cmd.IN_COMMUNICATE_THRU:
                return self._in_communicate_thru(data)
            case Cmd.IN_DATA_EXCHANGE if data:
                return self._in_data_exchange(data[0], data[1:])
            case Cmd.IN_DESELECT | Cmd.IN_RELEASE if data:
                if self._picc is not None and data[0] in (0, 1):  # 0 means every target
                    self._picc.deselect()
                return bytes([STATUS_OK])
            case Cmd.IN_SELECT if data:
                live = self._picc is not None and not self._picc.gone and self._field
                return bytes([STATUS_OK if live and data[0] == 1 else STATUS_BAD_TARGET])
            case Cmd.IN_AUTO_POLL:  # nothing found
                return bytes([0x00])
            case _:
                return None

    @staticmethod
    def _diagnose(data: bytes) -> bytes | None:
        test = data[0]
        if test == 0x00:  # communication line test: echo NumTst and the data
            return data
        if test in (0x01, 0x02):  # ROM and RAM tests: OK
            return bytes([STATUS_OK])
        return None

    def _in_list_passive_target(self, brty: int, initiator_data: bytes) -> bytes:
        self._field = True
        picc = self._picc
        if brty == BRTY_106A:
            found = picc.activate_a(initiator_data) if picc is not None else None
            if picc is None or found is None:
                self._registers[CIU_FIFO_DATA] = REQA
                self._no_target()
                return bytes([0x00])
            sens_res, sel_res, uid = found
            self._registers[CIU_FIFO_DATA] = 0x00
            self._registers[CIU_TX_MODE] = self._registers[CIU_RX_MODE] = CRC_ENABLE
            # SENS_RES goes to the host most significant byte first (UM0701-02 7.3.5).
            answer = bytes([0x01, 0x01, sens_res[1], sens_res[0], sel_res, len(uid)]) + uid
            if self._parameters & PARAM_AUTO_RATS and picc.card.iso_dep:
                answer += picc.exchange_frame(bytes([0xE0, 0x80])) or b""
            return answer
        if brty == BRTY_106B:
            atqb = picc.activate_b(initiator_data[0] if initiator_data else 0) if picc else None
            if picc is None or atqb is None:
                self._no_target()
                return bytes([0x00])
            self._registers[CIU_TX_MODE] = self._registers[CIU_RX_MODE] = (
                CRC_ENABLE | FRAMING_TYPE_B
            )
            # The firmware sends ATTRIB itself, with CID 1 and a 64-byte frame size (FSDI 5).
            attrib_res = picc.attrib(b"\x1d" + picc.uid + bytes([0x00, 0x05, 0x01, 0x01]))
            return bytes([0x01, 0x01]) + atqb + bytes([len(attrib_res)]) + attrib_res
        return bytes([0x00])

    def _no_target(self) -> None:
        """No card answered the activation: the firmware tried MxRtyPassiveActivation + 1
        times, or keeps trying until the host cancels."""
        retries = self._passive_retries
        self._rf_time_s = None if retries == RETRY_FOREVER else (retries + 1) * PASSIVE_ATTEMPT_S

    def _in_communicate_thru(self, frame: bytes) -> bytes:
        picc = self._picc
        answer = picc.exchange_frame(frame) if picc is not None and self._field else None
        if picc is None or answer is None:
            index = self._retry_timeout_index  # fRetryTimeout: 100 us x 2^(n-1), 0 = none
            self._rf_time_s = None if index == 0 else 100e-6 * (1 << (min(index, 16) - 1))
            return bytes([STATUS_TIMEOUT])
        if not self._registers.get(CIU_RX_MODE, 0) & CRC_ENABLE:
            answer += crc_a(answer)  # the host switched receive CRC checking off (Type 2)
        return bytes([STATUS_OK]) + answer

    def _in_data_exchange(self, target: int, data: bytes) -> bytes:
        picc = self._picc
        if target & 0x3F != 1:
            return bytes([STATUS_BAD_TARGET])
        if picc is None or not self._field:
            return bytes([STATUS_TIMEOUT])
        if picc.card.iso_dep:
            answer = picc.exchange_apdu(data, APDU_TIMEOUT_S)
        else:
            answer = picc.exchange_frame(data)
        if answer is None:
            return bytes([STATUS_TIMEOUT])
        return bytes([STATUS_OK]) + answer


__all__ = ["Cmd", "Pn532Emulator", "Technology"]
