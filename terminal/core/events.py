"""Events: past-tense facts the shell tells the machine. The shell stamps time and ids."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from hardware.ports import PilotState
from terminal.core.billing import Tariff
from terminal.core.session import Card, LocalStanding, Session
from terminal.money import Money


class Timer(enum.Enum):
    """The machine's named timers; starting one replaces a running one of the same name."""

    AUTHORIZATION = "authorization"  # waiting for the gateway's answer to a hold
    PLUG_IN = "plug_in"  # authorized, waiting for the vehicle to ask for energy
    METER_SAMPLE = "meter_sample"  # periodic meter reading
    CONTACTOR_CHECK = "contactor_check"  # read the feedback contact after its operate time
    SUSPENDED = "suspended"  # vehicle stopped asking for energy; end the session after this
    PILOT_RELEASE = "pilot_release"  # PWM off on a normal stop; waiting for the vehicle's C→B
    RECEIPT = "receipt"  # how long the receipt stays on screen
    NOTICE = "notice"  # how long a transient message stays on screen
    PAY_CODE = "pay_code"  # the pay-by-phone code on screen expires
    WEB_PAYMENT = "web_payment"  # a CSMS's web payment keeps the charger until this fires


class AuthOutcome(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"


class CardProblem(enum.Enum):
    """Why a tap produced no usable card."""

    TAP_AGAIN = "tap_again"  # removed too early, malformed answer, reader hiccup
    NOT_ACCEPTED = "not_accepted"  # no supported application, card refused
    EXPIRED = "expired"


class Diagnostic(enum.Enum):
    """Device tests a technician can ask for; the daemon thread runs them (it alone owns the
    devices), so a test never races a session for the relay, the reader or the meter bus."""

    SELFTEST = "selftest"  # every device, pass/fail each (read-only)
    METER = "meter"  # read the meter now (read-only)
    RELAY = "relay"  # close and open the contactor, checking the feedback each way
    READER = "reader"  # the next card in the field is classified, not charged


class Stamp(TypedDict):
    """The shell's stamp, spread into an event's constructor (`**stamp`)."""

    at_ms: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common stamp: monotonic milliseconds (timeouts) and aware UTC (records)."""

    at_ms: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PoweredUp(Event):
    """The daemon started: the journal's unsettled sessions and the meter register now
    (None if the meter did not answer)."""

    register_wh: int | None
    unsettled: tuple[Session, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CardPresented(Event):
    """A card was read and protected. `session_id` is fresh, for a session this tap may open."""

    card: Card
    session_id: str
    standing: LocalStanding = field(default_factory=LocalStanding)  # local lists, offline book


@dataclass(frozen=True, slots=True, kw_only=True)
class CardUnreadable(Event):
    problem: CardProblem


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationAnswered(Event):
    """The gateway's answer to a hold, or the sender's report that it got none."""

    session_id: str
    outcome: AuthOutcome
    amount: Money | None = None  # the approved amount; less than asked = partial approval
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementAnswered(Event):
    """The gateway's answer to an incremental authorization, or the sender's report that it
    got none. `amount` is the whole hold after it (approved only)."""

    session_id: str
    outcome: AuthOutcome
    amount: Money | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleStateChanged(Event):
    state: PilotState


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSampled(Event):
    energy_wh: int  # import register
    power_w: int
    current_ma: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterFailed(Event):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactorChecked(Event):
    """The feedback contact was read. `commanded_closed` is the command the shell had last
    carried out when it read it (None: unknown); a reading taken before the machine's latest
    command is stale: the check after that command's operate time decides."""

    closed: bool
    commanded_closed: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    timer: Timer


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRaised(Event):
    fault: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCleared(Event):
    fault: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutOfServiceChanged(Event):
    on: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrentLimited(Event):
    """A load manager limits the current the pilot may offer, in amperes (6..80), or lifts its
    limit (None)."""

    limit_a: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosticRequested(Event):
    """The console asked for a device test; `request_id` pairs the answer with the request.
    `window_ms` is how long a reader test waits for a card."""

    request_id: str
    test: Diagnostic
    window_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosticFinished(Event):
    """The shell ran a device test. `detail` is for a technician: never card data."""

    request_id: str
    test: Diagnostic
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TechnicianActed(Event):
    """A technician logged in or out, was locked out, or ran a privileged console command;
    `kind` is "technician" or "security". The machine reports it to the gateway."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedReadingRequested(Event):
    """Someone (the technician's console, the operator) asked for a signed meter reading of
    the running session now (OCMF reading reason "C")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRequested(Event):
    """The operator asked to stop this session from afar (OCPP RequestStopTransaction)."""

    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebPaymentAuthorized(Event):
    """A driver paid on the web (the payment page the kiosk's QR code opens) and the gateway
    asks, over the command channel, to start a session with `cost_limit` as its cap: the
    gateway holds that amount, and `session_id` is its authorization id (the session's
    lane: capture and void go there as for any session). OCPP 2.1 C25 (web payment) ends in
    this: RequestStartTransaction with a cost limit. The shell has journaled the command
    before posting this; `command_id` pairs the answer (started or not) with it. The kiosk
    never starts at or after `expires_at` (the one-time code's lifetime): the gateway
    releases the hold after it."""

    command_id: str
    session_id: str
    cost_limit: Money
    expires_at: datetime
    brand: str = "Web"  # how the driver paid, for the screens and the receipt
    last4: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PayCodeChanged(Event):
    """The gateway gave the kiosk a new pay-by-phone code: its QR link (`url`) and how long it
    may be shown (`valid_ms`, from now). `url` None: there is none to show."""

    url: str | None
    valid_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkCodeIssued(Event):
    """The gateway gave a one-time link code for the session's card or token, valid
    `valid_ms` from now. The code is a secret for that long: kept out of the event's repr
    (and so out of any log that prints an event)."""

    session_id: str
    code: str = field(repr=False)
    valid_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebPaymentStarted(Event):
    """The operator's CSMS says a driver began paying on its own web page for this charger
    (OCPP 2.1 C25, NotifyWebPaymentStarted): the kiosk keeps the charger for that payment,
    showing "payment in progress on your phone" and refusing other taps, for `timeout_ms`.
    The payment ends in the CSMS's RequestStartTransaction with a `DirectPayment` idToken
    (a `CardPresented` of a `CardKind.WEB` card) or in the timeout (back to idle). The shell
    has journaled it before posting this."""

    timeout_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CostLimitSet(Event):
    """The CSMS limited what the session's transaction may cost (OCPP 2.1
    TransactionEventResponse `transactionLimit.maxCost`; for a web payment it ran, C25, what
    its payment service holds): the session's cap becomes `limit` if that is lower."""

    session_id: str
    limit: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffChanged(Event):
    """The kiosk received another tariff from the gateway (`/v1/terminal-config`), or lost
    its assignment (back to the config file's: `key` None), and the shell has journaled it:
    new sessions are priced by it and the idle screen shows it; a running session keeps the
    tariff it started with."""

    tariff: Tariff
    key: str | None


AnyEvent = (
    PoweredUp
    | CardPresented
    | CardUnreadable
    | AuthorizationAnswered
    | IncrementAnswered
    | VehicleStateChanged
    | MeterSampled
    | MeterFailed
    | ContactorChecked
    | TimerFired
    | FaultRaised
    | FaultCleared
    | OutOfServiceChanged
    | CurrentLimited
    | DiagnosticRequested
    | DiagnosticFinished
    | TechnicianActed
    | SignedReadingRequested
    | StopRequested
    | WebPaymentAuthorized
    | PayCodeChanged
    | LinkCodeIssued
    | WebPaymentStarted
    | TariffChanged
    | CostLimitSet
)

EVENT_TYPES: tuple[type[Event], ...] = (
    PoweredUp,
    CardPresented,
    CardUnreadable,
    AuthorizationAnswered,
    IncrementAnswered,
    VehicleStateChanged,
    MeterSampled,
    MeterFailed,
    ContactorChecked,
    TimerFired,
    FaultRaised,
    FaultCleared,
    OutOfServiceChanged,
    CurrentLimited,
    DiagnosticRequested,
    DiagnosticFinished,
    TechnicianActed,
    SignedReadingRequested,
    StopRequested,
    WebPaymentAuthorized,
    PayCodeChanged,
    LinkCodeIssued,
    WebPaymentStarted,
    TariffChanged,
    CostLimitSet,
)
