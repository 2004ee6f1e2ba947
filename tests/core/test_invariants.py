"""The machine's safety and money invariants under random event sequences
(docs/architecture.md, "The core"): a hypothesis state machine drives `step` and checks every
step."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from hardware.ports import PilotState
from terminal.core.actions import (
    Action,
    AnswerStart,
    Capture,
    CloseContactor,
    OpenContactor,
    Record,
    RequestAuthorization,
    RequestIncrement,
    Void,
)
from terminal.core.billing import EnergyTariff
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    CardPresented,
    CardProblem,
    CardUnreadable,
    ContactorChecked,
    Event,
    FaultCleared,
    FaultRaised,
    IncrementAnswered,
    MeterFailed,
    MeterSampled,
    OutOfServiceChanged,
    PoweredUp,
    Stamp,
    Timer,
    TimerFired,
    VehicleStateChanged,
    WebPaymentAuthorized,
)
from terminal.core.kiosk import Authorizing, Charging, Kiosk, Rules, Suspended
from terminal.core.machine import step
from terminal.core.session import Card, CardKind, Session, Status
from terminal.money import Money

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
EUR = "EUR"

# A small hold so random meter samples reach the cost cap; a session fee so a session without
# energy still has a price (and must be voided, not captured); increments of 2.00 up to 9.00.
RULES = Rules(
    tariff=EnergyTariff(
        name="Test AC",
        currency=EUR,
        per_kwh=Decimal("0.30"),
        session_fee=Decimal("0.25"),
        vat_percent=Decimal(19),
    ),
    hold=Money(500, EUR),
    min_authorized=Money(200, EUR),
    station="Test Street 1",
    receipt_url="https://example.test/r",
    increment=Money(200, EUR),
    ceiling=Money(900, EUR),
)

CARDS = tuple(
    Card(kind=CardKind.PAYMENT, token=f"token-{n:012d}", brand="Visa", last4=f"{n:04d}")
    for n in (1, 2, 3)
)
# Pilot states drawn with weights: a vehicle mostly plugs, charges and pauses; E/F are rarer.
PILOT_STATES = (
    PilotState.A,
    PilotState.B,
    PilotState.B,
    PilotState.C,
    PilotState.C,
    PilotState.C,
    PilotState.C,
    PilotState.D,
    PilotState.D,
    PilotState.E,
    PilotState.F,
)
OUTCOMES = (AuthOutcome.APPROVED, AuthOutcome.APPROVED, AuthOutcome.DECLINED, AuthOutcome.NO_ANSWER)
RARE = 9  # rules that take the kiosk out of service act on one draw in RARE + 1
FAULTS = ("rcd_tripped", "overtemperature", "contactor_welded", "meter", "pilot_error")


class KioskMachine(RuleBasedStateMachine):
    """The kiosk as the shell sees it: events in, actions out, time only moving forward."""

    def __init__(self) -> None:
        super().__init__()
        self.kiosk = Kiosk(rules=RULES)
        self.ms = 0
        self.register_wh = 50_000
        self.next_id = 0
        self.session_ids: list[str] = []
        self.settled: Counter[str] = Counter()  # Capture or Void per session id, whole run
        self.approved: set[str] = set()  # an approval reached the session while it waited
        self.declined: set[str] = set()
        self.authorized: dict[str, Money] = {}
        # What the gateway granted each session: its approved hold, raised by increments.
        self.granted: dict[str, Money] = {}
        self.increments: dict[str, list[RequestIncrement]] = {}
        self.journal: dict[str, Session] = {}  # the last Record of each session
        self.commanded_closed = False
        # Sessions paid on the web that the kiosk took (answered "started"), and those of
        # them whose "started" the gateway took while the session waited for it.
        self.web: set[str] = set()
        self.confirmed: set[str] = set()

    # -- driving ----------------------------------------------------------------------------
    def stamp(self, after_ms: int) -> Stamp:
        self.ms += after_ms
        return Stamp(at_ms=self.ms, at=T0 + timedelta(milliseconds=self.ms))

    def send(self, kind: type[Event], after_ms: int, **fields: Any) -> None:
        event = kind(**self.stamp(after_ms), **fields)
        before = self.kiosk
        after, actions = step(before, event)
        self.observe(before, event, after, actions)
        self.kiosk = after

    @initialize(meter_silent=st.integers(0, RARE))
    def power_up(self, meter_silent: int) -> None:
        register = None if meter_silent == 0 else self.register_wh
        before = self.kiosk
        after, actions = step(before, PoweredUp(**self.stamp(0), register_wh=register))
        assert actions and isinstance(actions[0], OpenContactor), "first action opens"
        self.observe(before, None, after, actions)
        self.kiosk = after

    @rule(card=st.sampled_from(CARDS), after_ms=st.integers(0, 5_000))
    def tap(self, card: Card, after_ms: int) -> None:
        self.next_id += 1
        session_id = f"session-{self.next_id:06d}"
        self.session_ids.append(session_id)
        self.send(CardPresented, after_ms, card=card, session_id=session_id)

    @rule(
        card=st.sampled_from(CARDS),
        amount=st.sampled_from([300, 500]),
        state=st.sampled_from([PilotState.B, PilotState.C, PilotState.D]),
    )
    def driver_starts_a_session(self, card: Card, amount: int, state: PilotState) -> None:
        """The common path in one rule, so random runs reach charging often: plug in, tap,
        the hold is approved at once."""
        self.send(VehicleStateChanged, 1_000, state=state)
        self.tap(card, 2_000)
        current = self.kiosk.session
        if isinstance(self.kiosk.phase, Authorizing) and current is not None:
            self.send(
                AuthorizationAnswered,
                500,
                session_id=current.session_id,
                outcome=AuthOutcome.APPROVED,
                amount=Money(amount, EUR),
            )

    @rule(
        limit=st.sampled_from([100, 200, 300, 500, 900, 1000]),
        lifetime_ms=st.sampled_from([0, 60_000, 900_000]),
        after_ms=st.integers(0, 5_000),
    )
    def web_payment(self, limit: int, lifetime_ms: int, after_ms: int) -> None:
        """A driver paid on the phone and the gateway asks the kiosk to start (pay by phone):
        taken only between sessions; the gateway's word on "started" comes as `answer`."""
        self.next_id += 1
        session_id = f"web-{self.next_id:06d}"
        self.session_ids.append(session_id)
        self.send(
            WebPaymentAuthorized,
            after_ms,
            command_id=f"command-{self.next_id:06d}",
            session_id=session_id,
            cost_limit=Money(limit, EUR),
            expires_at=T0 + timedelta(milliseconds=self.ms + after_ms + lifetime_ms),
        )

    @rule(
        limit=st.sampled_from([300, 500]),
        state=st.sampled_from([PilotState.B, PilotState.C, PilotState.D]),
        outcome=st.sampled_from(OUTCOMES),
    )
    def driver_pays_on_the_phone(self, limit: int, state: PilotState, outcome: AuthOutcome) -> None:
        """Pay by phone in one rule: plugged in, paid, and the gateway's word on "started"
        (taken, refused, or none yet) at once."""
        self.send(VehicleStateChanged, 1_000, state=state)
        self.web_payment(limit, 900_000, 2_000)
        current = self.kiosk.session
        if isinstance(self.kiosk.phase, Authorizing) and current is not None:
            self.send(AuthorizationAnswered, 500, session_id=current.session_id, outcome=outcome)

    @rule(problem=st.sampled_from(CardProblem))
    def unreadable_tap(self, problem: CardProblem) -> None:
        self.send(CardUnreadable, 100, problem=problem)

    @rule(
        outcome=st.sampled_from(OUTCOMES),
        amount=st.sampled_from([100, 199, 200, 300, 499, 500, 500, 500, 900]),
        stale=st.integers(0, RARE),
        after_ms=st.integers(0, 25_000),
    )
    def answer(self, outcome: AuthOutcome, amount: int, stale: int, after_ms: int) -> None:
        """The gateway's answer (approved in full or in part, declined, none), mostly for the
        session waiting for it, now and then a late one for the oldest session."""
        current = self.kiosk.session
        if stale == 0 and self.session_ids:
            session_id = self.session_ids[0]  # an answer for the oldest session, long gone
        elif current is not None:
            session_id = current.session_id
        else:
            return
        self.send(
            AuthorizationAnswered,
            after_ms,
            session_id=session_id,
            outcome=outcome,
            amount=Money(amount, EUR) if outcome is AuthOutcome.APPROVED else None,
        )

    @rule(
        outcome=st.sampled_from(OUTCOMES),
        extra=st.sampled_from([-100, 0, 0, 100, 200, 700]),
        after_ms=st.integers(0, 3_000),
    )
    def increment_answered(self, outcome: AuthOutcome, extra: int, after_ms: int) -> None:
        """The gateway's answer to the latest increment asked for (approved for the whole
        hold it asked, or for less or more than that, declined, none), or a stray one."""
        current = self.kiosk.session
        if current is None:
            return
        asked = self.increments.get(current.session_id)
        base = self.granted.get(current.session_id, Money(0, EUR))
        step = asked[-1].amount.minor if asked else 0
        self.send(
            IncrementAnswered,
            after_ms,
            session_id=current.session_id,
            outcome=outcome,
            amount=(
                Money(max(base.minor + step + extra, 1), EUR)
                if outcome is AuthOutcome.APPROVED
                else None
            ),
        )

    @rule(state=st.sampled_from(PILOT_STATES), after_ms=st.integers(0, 60_000))
    def pilot(self, state: PilotState, after_ms: int) -> None:
        self.send(VehicleStateChanged, after_ms, state=state)

    @rule(add_wh=st.integers(0, 4_000), after_ms=st.integers(1, 120_000))
    def meter(self, add_wh: int, after_ms: int) -> None:
        self.register_wh += add_wh
        self.send(
            MeterSampled,
            after_ms,
            energy_wh=self.register_wh,
            power_w=add_wh * 3_600_000 // after_ms,
        )

    @rule(steps=st.lists(st.integers(0, 4_000), min_size=2, max_size=10))
    def vehicle_draws_energy(self, steps: list[int]) -> None:
        """A run of one-second samples, as while charging: reaches the cost cap often."""
        for add_wh in steps:
            self.meter(add_wh, 1_000)

    @rule(draw=st.integers(0, RARE))
    def meter_fails(self, draw: int) -> None:
        if draw == 0:
            self.send(MeterFailed, 1_000, reason="timeout")

    @rule(timer=st.sampled_from(Timer), after_ms=st.integers(0, 200_000))
    def timer_fires(self, timer: Timer, after_ms: int) -> None:
        self.send(TimerFired, after_ms, timer=timer)

    @rule(fault=st.sampled_from(FAULTS), draw=st.integers(0, RARE))
    def fault_changes(self, fault: str, draw: int) -> None:
        """A fault input is raised (now and then) or cleared (more often)."""
        if draw == 0:
            self.send(FaultRaised, 10, fault=fault)
        else:
            self.send(FaultCleared, 10, fault=fault)

    @rule(agrees=st.integers(0, RARE))
    def contactor_checked(self, agrees: int) -> None:
        """The feedback contact mostly agrees with the command; sometimes it does not
        (welded, or failed to close)."""
        closed = self.commanded_closed if agrees else not self.commanded_closed
        self.send(ContactorChecked, 100, closed=closed)

    @precondition(lambda self: bool(self.kiosk.faults))
    @rule()
    def technician_clears_faults(self) -> None:
        for fault in sorted(self.kiosk.faults):
            self.send(FaultCleared, 1_000, fault=fault)

    @rule(draw=st.integers(0, RARE))
    def out_of_service(self, draw: int) -> None:
        self.send(OutOfServiceChanged, 10, on=draw == 0)

    @precondition(lambda self: any(not s.status.settled for s in self.journal.values()))
    @rule()
    def crash_and_restart(self) -> None:
        """Power lost: a new kiosk starts from the journal's unsettled sessions."""
        unsettled = tuple(s for s in self.journal.values() if not s.status.settled)
        before = Kiosk(rules=RULES)
        self.commanded_closed = False  # the relay drops on reset (fail-open)
        event = PoweredUp(**self.stamp(5_000), register_wh=self.register_wh, unsettled=unsettled)
        after, actions = step(before, event)
        assert actions and isinstance(actions[0], OpenContactor), "first action opens"
        self.observe(before, event, after, actions)
        self.kiosk = after
        for session in unsettled:
            assert self.settled[session.session_id] == 1, f"{session.session_id} not recovered"

    # -- checking ---------------------------------------------------------------------------
    def observe(
        self, before: Kiosk, event: Event | None, after: Kiosk, actions: tuple[Action, ...]
    ) -> None:
        # A fault added while the contactor was closed opens it before anything else.
        if before.contactor_closed and after.faults - before.faults:
            assert actions and isinstance(actions[0], OpenContactor), (event, actions)

        if (
            isinstance(event, AuthorizationAnswered)
            and isinstance(before.phase, Authorizing)
            and before.phase.session.session_id == event.session_id
        ):
            if event.session_id in self.web:
                # The gateway took "started": it holds the cost limit the session carries.
                if event.outcome is AuthOutcome.APPROVED:
                    self.confirmed.add(event.session_id)
                    self.approved.add(event.session_id)
                    self.granted[event.session_id] = before.phase.session.hold
            elif event.outcome is AuthOutcome.APPROVED and event.amount is not None:
                self.approved.add(event.session_id)
                self.granted[event.session_id] = event.amount
            elif event.outcome is AuthOutcome.DECLINED:
                self.declined.add(event.session_id)

        # The gateway raises what it holds only when it approves an increment asked for.
        if (
            isinstance(event, IncrementAnswered)
            and event.outcome is AuthOutcome.APPROVED
            and event.amount is not None
            and self.increments.get(event.session_id)
            and event.session_id in self.granted
        ):
            self.granted[event.session_id] = max(self.granted[event.session_id], event.amount)

        for action in actions:
            match action:
                case OpenContactor():
                    self.commanded_closed = False
                case CloseContactor():
                    self.commanded_closed = True
                    # A session paid on the web gets energy only once the gateway took its
                    # "started" (so never on a hold the gateway released).
                    charging = after.session
                    assert charging is not None
                    if charging.session_id in self.web:
                        assert charging.session_id in self.confirmed, charging.session_id
                case AnswerStart(started=True):
                    assert action.session_id not in self.web, "started twice"
                    self.web.add(action.session_id)
                case Record():
                    session = action.session
                    self.journal[session.session_id] = session
                    if session.authorized is not None:
                        # Never more than the hold and the increments asked for, the ceiling,
                        # or what the gateway granted.
                        asked = self.increments.get(session.session_id, [])
                        assert session.authorized <= session.hold + sum(
                            (a.amount for a in asked), Money(0, EUR)
                        )
                        assert session.authorized <= max(
                            session.hold, RULES.ceiling or session.hold
                        )
                        granted = self.granted.get(session.session_id)
                        assert granted is not None, f"{session.session_id} authorized unanswered"
                        assert session.authorized <= granted
                        self.authorized[session.session_id] = session.authorized
                case RequestAuthorization():
                    assert action.amount == RULES.hold
                case RequestIncrement():
                    # Only for a session charging or parked under an approved hold, one at a
                    # time, never past the ceiling.
                    assert isinstance(after.phase, Charging | Suspended), after.phase
                    asked = self.increments.setdefault(action.session_id, [])
                    assert action.number == len(asked) + 1
                    asked.append(action)
                    assert action.ceiling == RULES.ceiling
                    assert action.amount.minor > 0
                    session = after.phase.session
                    assert session.increment_asked is not None
                    assert session.increment_asked <= RULES.ceiling
                case Capture():
                    self.settled[action.session_id] += 1
                    cap = self.authorized.get(action.session_id)
                    assert cap is not None, f"capture of an unauthorized {action.session_id}"
                    assert Money(0, EUR) < action.amount <= cap
                    # Captured never exceeds the hold the gateway granted, increments included.
                    assert action.amount <= self.granted[action.session_id]
                    assert action.energy_wh > 0
                    assert action.bill.total.currency == EUR
                    recorded = self.journal[action.session_id]
                    assert recorded.status is Status.CAPTURING
                case Void():
                    self.settled[action.session_id] += 1
                    assert self.journal[action.session_id].status is Status.VOIDING
                    # A hold is never released while energy is counted against it.
                    assert self.journal[action.session_id].energy_wh == 0, action
                case _:
                    pass

        # At most one capture or void per session, across the whole run.
        for session_id, count in self.settled.items():
            assert count <= 1, f"{session_id} settled {count} times"

        # The contactor: closed only while an authorized session charges, the vehicle asks
        # for energy and no fault is active.
        assert after.contactor_closed == self.commanded_closed
        if self.commanded_closed:
            phase = after.phase
            assert isinstance(phase, Charging), phase
            assert not after.faults, after.faults
            assert after.pilot.wants_energy, after.pilot
            session = phase.session
            assert session.authorized is not None
            assert session.status is Status.CHARGING
            # The running cost never passes what was authorized while energy flows.
            if session.meterage is not None:
                assert session.meterage.total() <= session.authorized

        # Every approved session that has left the machine got exactly one capture or void;
        # so did every other session that left it, unless its hold was declined.
        here = after.session.session_id if after.session is not None else None
        for session_id in self.session_ids:
            if session_id == here:
                continue
            if session_id in self.approved:
                assert self.settled[session_id] == 1, f"approved {session_id} never settled"
            recorded = self.journal.get(session_id)
            if recorded is not None and recorded.status is not Status.DECLINED:
                assert recorded.status.settled, (session_id, recorded.status)
                assert self.settled[session_id] == 1, f"{session_id} left unsettled"


KioskMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_kiosk_upholds_safety_and_money_invariants = KioskMachine.TestCase
