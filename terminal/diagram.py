"""The state diagram, generated from the machine itself (Mermaid).

Edges are found, not written down: starting from `Booting`, the explorer feeds `step` every
event of a small alphabet (taps of two cards, answers, pilot states, meter samples, every
timer, faults, out of service, contactor feedback, a payment made on the phone)
breadth-first, and records each (phase before, event, phase after) it sees. So the
diagram cannot drift from the table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from hardware.ports import PilotState
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
    MeterFailed,
    MeterSampled,
    OutOfServiceChanged,
    PoweredUp,
    Timer,
    TimerFired,
    VehicleStateChanged,
    WebPaymentAuthorized,
)
from terminal.core.kiosk import Kiosk, Rules
from terminal.core.machine import IGNORED, TRANSITIONS, step
from terminal.core.session import Card, CardKind
from terminal.money import Money

MAX_STATES = 4000
_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_TOKENS = ("ct_diagram_a", "ct_diagram_b")  # card tokens (keyed hashes), not secrets
_CARDS = tuple(
    Card(kind=CardKind.PAYMENT, token=token, brand="Visa", last4="0010") for token in _TOKENS
)


def _rules() -> Rules:
    from decimal import Decimal  # noqa: PLC0415 - only the explorer needs a tariff

    tariff = EnergyTariff(name="diagram", currency="EUR", per_kwh=Decimal("0.30"))
    return Rules(
        tariff=tariff,
        hold=Money(5000, "EUR"),
        min_authorized=Money(500, "EUR"),
        station="diagram",
        receipt_url="http://localhost/receipts",
    )


def _alphabet(kiosk: Kiosk, n: int) -> Iterator[Event]:
    at = {"at_ms": n * 1000, "at": _T0 + timedelta(seconds=n)}
    register = (kiosk.register_wh or 0) + 500
    session = kiosk.session
    sid = session.session_id if session is not None else "none"
    yield PoweredUp(register_wh=1000, **at)  # type: ignore[arg-type]
    for i, card in enumerate(_CARDS):
        yield CardPresented(card=card, session_id=f"s{n}-{i}", **at)  # type: ignore[arg-type]
    yield CardUnreadable(problem=CardProblem.TAP_AGAIN, **at)  # type: ignore[arg-type]
    for outcome, amount in (
        (AuthOutcome.APPROVED, Money(5000, "EUR")),
        (AuthOutcome.DECLINED, None),
        (AuthOutcome.NO_ANSWER, None),
    ):
        yield AuthorizationAnswered(session_id=sid, outcome=outcome, amount=amount, **at)  # type: ignore[arg-type]
    for state in (PilotState.A, PilotState.B, PilotState.C, PilotState.F):
        yield VehicleStateChanged(state=state, **at)  # type: ignore[arg-type]
    yield MeterSampled(energy_wh=register, power_w=11000, **at)  # type: ignore[arg-type]
    # A large step too, so the cost cap is reached within the explorer's depth.
    yield MeterSampled(energy_wh=register + 500_000, power_w=11000, **at)  # type: ignore[arg-type]
    yield MeterFailed(reason="silent", **at)  # type: ignore[arg-type]
    yield ContactorChecked(closed=not kiosk.contactor_closed, **at)  # type: ignore[arg-type]
    for timer in Timer:
        yield TimerFired(timer=timer, **at)  # type: ignore[arg-type]
    yield FaultRaised(fault="rcd", **at)  # type: ignore[arg-type]
    yield FaultCleared(fault="rcd", **at)  # type: ignore[arg-type]
    yield OutOfServiceChanged(on=not kiosk.out_of_service, **at)  # type: ignore[arg-type]
    yield WebPaymentAuthorized(  # paid on the phone, within the code's lifetime
        command_id=f"c{n}",
        session_id=f"w{n}",
        cost_limit=Money(5000, "EUR"),
        expires_at=_T0 + timedelta(days=1),
        **at,  # type: ignore[arg-type]
    )


def _signature(k: Kiosk) -> tuple[object, ...]:
    # A session paid on the phone is a state of its own: no card taps it to a stop.
    kind = k.session.card.kind if k.session is not None else None
    return (type(k.phase), k.pilot, k.faults, k.out_of_service, k.contactor_closed, kind)


def edges(
    explore: Callable[[Kiosk, int], Iterator[Event]] = _alphabet,
) -> set[tuple[str, str, str]]:
    """(phase before, event, phase after) for every phase change the explorer reaches."""
    start = Kiosk(rules=_rules())
    seen = {_signature(start)}
    todo: deque[tuple[Kiosk, int]] = deque([(start, 1)])
    found: set[tuple[str, str, str]] = set()
    while todo and len(seen) < MAX_STATES:
        kiosk, n = todo.popleft()
        for event in explore(kiosk, n):
            after, _ = step(kiosk, event)
            before_name, after_name = type(kiosk.phase).__name__, type(after.phase).__name__
            if before_name != after_name:
                found.add((before_name, type(event).__name__, after_name))
            sig = _signature(after)
            if sig not in seen:
                seen.add(sig)
                todo.append((after, n + 1))
    return found


def mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> Booting"]
    for before, event, after in sorted(edges()):
        lines.append(f"    {before} --> {after}: {event}")
    lines.append(f"    %% {len(TRANSITIONS)} handled pairs, {len(IGNORED)} ignored by name")
    return "\n".join(lines)


def markdown() -> str:
    """docs/state-machine.md: the diagram in a Mermaid block, with how it is made."""
    return (
        "# The session state machine\n\n"
        "Generated by `make diagram` (`ev-terminal diagram --markdown`) from the machine in\n"
        "`terminal/core/machine.py`: every phase change an explorer reaches by feeding `step`\n"
        "a small alphabet of events. Do not edit by hand; a test checks it is current.\n\n"
        f"```mermaid\n{mermaid()}\n```\n"
    )
