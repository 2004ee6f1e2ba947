"""Booting: the one `PoweredUp`. The contactor opens first; every session the journal shows
unsettled is settled exactly once, from the journal and the meter's register."""

from __future__ import annotations

from dataclasses import replace

from terminal.core.actions import (
    Action,
    Capture,
    Record,
    Report,
    StartTimer,
    TakeSignedReading,
    Void,
    WithdrawEnergy,
)
from terminal.core.events import Event, PoweredUp, Timer
from terminal.core.handlers.base import METER_FAULT, Result, _open, _rest, _tariff
from terminal.core.handlers.ending import _abandon, _settle
from terminal.core.kiosk import Kiosk
from terminal.core.session import Session, Status


def _powered_up(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, PoweredUp)
    k, opened = _open(k)
    k = replace(k, register_wh=e.register_wh)
    actions: list[Action] = [*opened, WithdrawEnergy()]  # no energy on offer until paid
    for stale in e.unsettled:
        actions += _recover(k, stale, e)
    actions.append(StartTimer(timer=Timer.METER_SAMPLE, after_ms=k.rules.sample_interval_ms))
    if e.register_wh is None:
        # A meter missing at start is a fault like one lost later: shown and reported.
        k = replace(k, faults=k.faults | {METER_FAULT})
        actions.append(Report(kind="fault", detail=METER_FAULT))
    k2, rest = _rest(k, e.at, *actions)
    return k2, (*rest, Report(kind="started", detail=f"unsettled={len(e.unsettled)}"))


def _recover(k: Kiosk, session: Session, e: PoweredUp) -> tuple[Action, ...]:
    """Settle a session the journal shows unsettled after a restart, exactly once."""
    if session.status in (Status.AUTHORIZING, Status.AUTHORIZED) or (
        session.start_register_wh is None
    ):
        _, actions = _abandon(k, session, "restart")
        return actions
    energy = session.energy_wh
    if e.register_wh is not None:
        # The contactor has been open since the crash: the register now is the final reading.
        energy = max(energy, e.register_wh - session.start_register_wh)
    start = session.charging_started_at or session.started_at
    meterage = (
        _tariff(k, session)
        .begin(start)
        .advance(
            at=session.last_sample_at or e.at,
            energy_wh=energy,
            power_w=0,
            current_ma=0,
            charging=True,
        )
    )
    session = replace(
        session,
        energy_wh=energy,
        meterage=meterage,
        ended_at=session.ended_at or e.at,
        end_reason=session.end_reason or "restart",
    )
    _, actions = _settle(k, session, e)
    return tuple(a for a in actions if isinstance(a, Record | Capture | Void | TakeSignedReading))
