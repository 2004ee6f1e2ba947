"""Actions: commands the machine gives the shell. The executor performs them in order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from terminal.core.billing import Bill
from terminal.core.events import Diagnostic, Timer
from terminal.core.screens import Screen
from terminal.core.session import Card, Session
from terminal.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenContactor:
    """Open the contactor enable output. Always the first action on any fault."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseContactor:
    """Close the contactor enable output (only while authorized, state C/D, no fault)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferEnergy:
    """Offer the vehicle up to `current_a` amperes: the control pilot's PWM on with that duty
    cycle (IEC 61851-1 Annex A), so a connected vehicle may go from B to C. Only for an
    authorized session; given again while charging, it changes the current."""

    current_a: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawEnergy:
    """No energy on offer: the pilot's PWM off. A vehicle in C stops drawing current and goes
    to B; a plug-first vehicle waits in B. From power-up until a session is authorized, and
    first on every stop (IEC 61851-1 Annex A: the vehicle ends the load, then the contactor
    opens)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckContactor:
    """Read the feedback contact; the shell answers with `ContactorChecked`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMeter:
    """Read the meter now; the shell answers with `MeterSampled` or `MeterFailed`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowScreen:
    screen: Screen


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Commit the session to the journal (before any later action acts on it)."""

    session: Session


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAuthorization:
    """Queue a hold of `amount` on `card`; the answer returns as `AuthorizationAnswered`."""

    session_id: str
    amount: Money
    card: Card


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestIncrement:
    """Queue an incremental authorization: raise the hold by `amount`, the whole hold never
    past `ceiling`. `number` counts the session's increments (each has its own idempotency
    key); the answer returns as `IncrementAnswered`."""

    session_id: str
    amount: Money
    ceiling: Money
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """Queue the final capture of `amount` (never more than authorized, never zero)."""

    session_id: str
    amount: Money
    energy_wh: int
    bill: Bill
    receipt_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Void:
    """Queue the release of the hold (queued after the authorization, so it always follows it)."""

    session_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    timer: Timer
    after_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Tell the gateway about a status change, fault or security event (queued)."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDiagnostic:
    """Run a device test on the daemon thread; the result returns as `DiagnosticFinished`.

    `operate_ms` is the contactor's operate time (relay test), `contactor_closed` what the
    machine last commanded (self-test compares the feedback with it), `window_ms` how long a
    reader test waits for a card."""

    request_id: str
    test: Diagnostic
    operate_ms: int = 0
    contactor_closed: bool = False
    window_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Tell the requester (the console) the outcome of its request."""

    request_id: str
    ok: bool
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeSignedReading:
    """Queue a signed meter reading (OCMF) of the register at `register_wh`, taken at `at`, for
    the session: "begin" when energy first flows, "end" when the session is settled (the
    register the bill was made from), "charging" in between on request. The shell builds
    and signs it (the device key) and sends the readings in batches."""

    session_id: str
    kind: str  # "begin" | "charging" | "end"
    register_wh: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerStart:
    """Queue the answer to the gateway's command to start a web-paid session: started, or not
    and why (the gateway then releases the hold). Queued in the session's lane, so its
    capture or void follows it."""

    command_id: str
    session_id: str
    started: bool
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestLinkCode:
    """Ask the gateway for a one-time code that links the session's card or RFID token to a
    driver's account on the portal, for the receipt screen (the answer is `LinkCodeIssued`).
    Not journaled and never retried: a code is worth showing only while the receipt is."""

    session_id: str


Action = (
    OpenContactor
    | CloseContactor
    | OfferEnergy
    | WithdrawEnergy
    | CheckContactor
    | ReadMeter
    | ShowScreen
    | Record
    | RequestAuthorization
    | RequestIncrement
    | Capture
    | Void
    | StartTimer
    | CancelTimer
    | Report
    | RunDiagnostic
    | Answer
    | TakeSignedReading
    | AnswerStart
    | RequestLinkCode
)
