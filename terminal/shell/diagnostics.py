"""Device tests for the technician's console, run where the devices live: the daemon thread.

The console posts `DiagnosticRequested`; the machine refuses it or answers with
`RunDiagnostic`, which the executor hands to `Diagnostics.perform` on the daemon thread, so a
test never races a session for the relay, the reader or the meter bus. Results return as
`DiagnosticFinished` events; the machine turns them into `Answer` actions, which land in
`Answers`, where the console thread waits for them with a bounded timeout.

- **relay**: close, wait the operate time, read the feedback, open (always, in `finally`),
  wait, read it again. The daemon thread holds the relay for the whole test, so nothing else
  acts in between. The last reading is posted as `ContactorChecked`, so a contactor that
  stays closed is a weld fault by the machine's usual rule.
- **reader**: arms a window; the next card the reader thread sees is run through the card
  kernel and reported by kind and brand only (no PAN, no last four digits), and no session
  starts from it. Nothing in the window: the test fails.
- **meter**: one reading. **selftest**: every device, pass/fail each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hardware.clock import Clock
from hardware.ports import DeviceFault
from terminal.core.actions import Answer, RunDiagnostic
from terminal.core.events import (
    CardProblem,
    ContactorChecked,
    Diagnostic,
    DiagnosticFinished,
    Event,
    Stamp,
)
from terminal.core.session import Card, CardKind
from terminal.errors import JournalError
from terminal.shell.devices import Devices
from terminal.shell.journal import Journal

log = logging.getLogger("ev_terminal.diagnostics")

MAX_UNCLAIMED_ANSWERS = 32  # answers nobody waited for are dropped oldest first


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    text: str


class Answers:
    """A mailbox of answers by request id: the daemon thread puts, the console thread waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._answers: OrderedDict[str, Reply] = OrderedDict()

    def put(self, request_id: str, reply: Reply) -> None:
        with self._cond:
            self._answers[request_id] = reply
            while len(self._answers) > MAX_UNCLAIMED_ANSWERS:
                self._answers.popitem(last=False)
            self._cond.notify_all()

    def wait(self, request_id: str, timeout: float) -> Reply | None:
        """The answer to `request_id`, removed; None if none came within `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._answers, timeout=timeout)
            return self._answers.pop(request_id, None)


class Diagnostics:
    def __init__(
        self,
        *,
        devices: Devices,
        journal: Journal,
        clock: Clock,
        post: Callable[[Event], None],
        reader_ok: Callable[[], bool],
        gateway_reachable: Callable[[], bool | None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.devices = devices
        self.journal = journal
        self.clock = clock
        self.post = post
        self.reader_ok = reader_ok
        self.gateway_reachable = gateway_reachable
        self.sleep = sleep
        self.answers = Answers()
        self._lock = threading.Lock()
        self._reader_test: tuple[str, int] | None = None  # (request id, deadline ms)

    def _stamp(self) -> Stamp:
        return Stamp(at_ms=self.clock.monotonic_ms(), at=self.clock.now())

    def _finish(self, request_id: str, test: Diagnostic, passed: bool, detail: str) -> None:
        log.info("event=diagnostic test=%s passed=%s", test.value, passed)
        self.post(
            DiagnosticFinished(
                request_id=request_id, test=test, passed=passed, detail=detail, **self._stamp()
            )
        )

    # -- the daemon thread -------------------------------------------------------------------
    def perform(self, action: RunDiagnostic | Answer) -> None:
        if isinstance(action, Answer):
            self.answers.put(action.request_id, Reply(action.ok, action.text))
            return
        match action.test:
            case Diagnostic.RELAY:
                self._relay(action)
            case Diagnostic.READER:
                with self._lock:
                    deadline = self.clock.monotonic_ms() + action.window_ms
                    self._reader_test = (action.request_id, deadline)
            case Diagnostic.METER:
                passed, detail = self._meter()
                self._finish(action.request_id, action.test, passed, detail)
            case Diagnostic.SELFTEST:
                self._selftest(action)

    def _relay(self, action: RunDiagnostic) -> None:
        contactor = self.devices.contactor
        operate_s = action.operate_ms / 1000
        closed = False
        try:
            contactor.close()
            self.sleep(operate_s)
            closed = contactor.feedback_closed()
        except DeviceFault as exc:
            log.error("event=relay_test_failed error=%s", exc)
        finally:
            contactor.open()
        self.sleep(operate_s)
        stuck = contactor.feedback_closed()
        self.post(ContactorChecked(closed=stuck, **self._stamp()))
        detail = (
            f"close: feedback {'closed (ok)' if closed else 'OPEN (fail)'}; "
            f"open: feedback {'CLOSED (fail: welded?)' if stuck else 'open (ok)'}"
        )
        self._finish(action.request_id, action.test, closed and not stuck, detail)

    def _meter(self) -> tuple[bool, str]:
        meter = self.devices.meter
        try:
            r = meter.read()
        except DeviceFault as exc:
            return False, f"meter {meter.meter_id}: no answer ({exc})"
        return True, (
            f"meter {meter.meter_id}: register {r.energy_wh} Wh, power {r.power_w} W, "
            f"voltage {r.voltage_dv / 10:.1f} V, current {r.current_ma / 1000:.3f} A"
        )

    def _selftest(self, action: RunDiagnostic) -> None:
        results: list[tuple[str, bool, str]] = []
        try:
            closed = self.devices.contactor.feedback_closed()
            expected = action.contactor_closed
            results.append(
                (
                    "contactor",
                    closed == expected,
                    f"commanded {'closed' if expected else 'open'}, "
                    f"feedback {'closed' if closed else 'open'}",
                )
            )
        except DeviceFault as exc:
            results.append(("contactor", False, str(exc)))
        meter_ok, meter_detail = self._meter()
        results.append(("meter", meter_ok, meter_detail))
        try:
            pilot = self.devices.vehicle.state()
            results.append(("vehicle link", not pilot.faulted, f"pilot {pilot.value}"))
        except DeviceFault as exc:
            results.append(("vehicle link", False, str(exc)))
        reader_ok = self.reader_ok()
        results.append(("reader", reader_ok, "answering" if reader_ok else "not answering"))
        try:
            self.journal.check()
            results.append(("journal", True, "integrity ok"))
        except JournalError as exc:
            results.append(("journal", False, str(exc)))
        reachable = self.gateway_reachable()
        gateway = {None: "not contacted yet", True: "reachable", False: "unreachable"}
        results.append(("gateway", reachable is not False, gateway[reachable]))
        watchdog = self.devices.watchdog is not None
        results.append(("watchdog", True, "armed" if watchdog else "none configured"))
        passed = all(ok for _, ok, _ in results)
        lines = [f"{name:<13}{'pass' if ok else 'FAIL'}  {detail}" for name, ok, detail in results]
        self._finish(action.request_id, action.test, passed, "\n".join(lines))

    # -- the reader thread -------------------------------------------------------------------
    def reader_test_armed(self) -> bool:
        with self._lock:
            return self._reader_test is not None

    def reader_idle(self) -> None:
        """Nothing in the field: end an armed reader test whose window has passed."""
        with self._lock:
            test = self._reader_test
            if test is None or self.clock.monotonic_ms() < test[1]:
                return
            self._reader_test = None
        self._finish(test[0], Diagnostic.READER, False, "no card seen in the window")

    def card_seen(self, result: Card | CardProblem) -> None:
        """An armed reader test takes the card: its kind and brand, never its data."""
        with self._lock:
            test, self._reader_test = self._reader_test, None
        if test is None:
            return
        if isinstance(result, CardProblem):
            detail = f"card detected, not readable: {result.value.replace('_', ' ')}"
        elif result.kind is CardKind.PAYMENT:
            detail = f"card detected: payment card ({result.brand})"
        else:
            detail = f"card detected: identification token ({result.brand})"
        self._finish(test[0], Diagnostic.READER, True, detail)
