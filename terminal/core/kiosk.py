"""The machine's state: the kiosk's standing facts and the current phase of its session."""

from __future__ import annotations

from dataclasses import dataclass, field

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.billing import Tariff
from terminal.core.session import LocalStanding, Session
from terminal.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflinePolicy:
    """What may start when the gateway gives no answer (README, "Offline policy").

    An ID token on the local authorization list starts with the usual hold as its cap
    (`local_list`). A payment card starts only with an online authorization, unless
    `store_and_forward` is on: then it starts with a cap of `max_session` (at most the hold)
    while the unanswered offline payment sessions, this one included, stay within
    `max_outstanding` in amount and `max_count` in number, and the oldest of them is at most
    `max_age_ms` old. A token on the deny list never starts offline."""

    local_list: bool = True
    store_and_forward: bool = False
    max_session: Money | None = None
    max_outstanding: Money | None = None
    max_count: int = 0
    max_age_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What the operator configured, as the machine needs it."""

    tariff: Tariff  # what a new session is priced by (and the idle screen shows)
    hold: Money  # amount held on the card before energy flows
    min_authorized: Money  # a partial approval below this is refused (voided)
    station: str
    receipt_url: str  # receipt page base URL; the receipt id is appended
    # Incremental authorization: top the hold up by `increment` before the cost reaches it,
    # never past `ceiling` in all (None: the hold is the cap).
    increment: Money | None = None
    ceiling: Money | None = None
    authorization_timeout_ms: int = 20_000
    plug_in_timeout_ms: int = 120_000
    suspended_timeout_ms: int = 30 * 60_000
    receipt_ms: int = 60_000
    notice_ms: int = 5_000
    sample_interval_ms: int = 1_000
    contactor_check_ms: int = 100  # contactor operate time before the feedback is read
    max_current_a: int = 16  # what the pilot offers a session (the installation's limit)
    # A normal stop turns the PWM off and waits this long for C→B before it opens the
    # contactor anyway (IEC 61851-1 Annex A gives the vehicle a few seconds to end the load).
    pilot_release_ms: int = 6_000
    # The kiosk turns the pilot PWM on and off (the EVSE-DIN board). False for a pilot it only
    # reads (the GPIO variant, a board that makes the pilot itself): there is no PWM to turn
    # off, so a normal stop opens the contactor at once, as a fault does.
    pwm_control: bool = True
    # Near the cost cap the offer drops to `taper_current_a` once the cost reaches this share
    # of the authorized amount, in percent (0: never; terminal/core/current.py).
    taper_at_percent: int = 0
    taper_current_a: int = 6
    record_every_wh: int = 100  # journal the running energy at least this often
    offline: OfflinePolicy = OfflinePolicy()
    # The journal's key of `tariff` when the gateway sent it (/v1/terminal-config); None: the
    # tariff of the config file.
    tariff_key: str | None = None


# -- phases (states are nouns) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Booting:
    """Started, waiting for the shell's `PoweredUp` (contactor state unknown)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle:
    """Showing the price, waiting for a tap."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorizing:
    session: Session
    # What the kiosk knows locally, for a decision if the gateway does not answer.
    standing: LocalStanding = field(default_factory=LocalStanding)


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingVehicle:
    """Hold approved; waiting for the vehicle to be plugged in and ask for energy."""

    session: Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Charging:
    session: Session
    # A normal stop under way: the PWM is off and the contactor stays closed until the vehicle
    # goes C→B (or `Timer.PILOT_RELEASE` fires); the reason the session ends with.
    stopping: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspended:
    """The vehicle stopped asking for energy (C→B); the contactor is open, the session open."""

    session: Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Finishing:
    """Contactor opened; waiting for the final meter reading to settle."""

    session: Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """Settled; showing the receipt (`shown`, to show it again with a link code)."""

    session: Session
    shown: screens.Receipt | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    """Faulted or out of service: no sessions start."""


Phase = (
    Booting
    | Idle
    | Authorizing
    | AwaitingVehicle
    | Charging
    | Suspended
    | Finishing
    | Receipt
    | Unavailable
)

PHASE_TYPES: tuple[type, ...] = (
    Booting,
    Idle,
    Authorizing,
    AwaitingVehicle,
    Charging,
    Suspended,
    Finishing,
    Receipt,
    Unavailable,
)

SessionPhase = Authorizing | AwaitingVehicle | Charging | Suspended | Finishing | Receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class Kiosk:
    """The whole state the machine folds events into."""

    rules: Rules
    phase: Phase = field(default_factory=Booting)
    pilot: PilotState = PilotState.A
    faults: frozenset[str] = frozenset()
    out_of_service: bool = False
    contactor_closed: bool = False  # as commanded
    register_wh: int | None = None  # last meter register read
    pay_url: str | None = None  # the pay-by-phone code's link the idle screen shows as a QR
    current_limit_a: int | None = None  # a load manager's limit on the offer (CurrentLimited)
    # A web payment the CSMS runs keeps the charger (OCPP 2.1 C25) until Timer.WEB_PAYMENT.
    web_payment: bool = False

    @property
    def available(self) -> bool:
        return not self.faults and not self.out_of_service

    @property
    def session(self) -> Session | None:
        phase = self.phase
        if isinstance(phase, Authorizing | AwaitingVehicle | Charging | Suspended | Finishing):
            return phase.session
        return None
