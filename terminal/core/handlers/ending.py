"""How a session ends: a hold given up before any energy (`_abandon`, a void), a stop that
opens the contactor and takes the final reading (`_stop`, or `_release` with the PWM off first),
the one capture or void and the receipt (`_settle`), and the Finishing and Receipt phases'
handlers (the final sample, the receipt's link code, a second tap of the session's card)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

from terminal.core import screens
from terminal.core.actions import (
    Action,
    CancelTimer,
    Capture,
    ReadMeter,
    Record,
    Report,
    RequestLinkCode,
    ShowScreen,
    StartTimer,
    TakeSignedReading,
    Void,
    WithdrawEnergy,
)
from terminal.core.billing import limit_to
from terminal.core.events import CardPresented, Event, LinkCodeIssued, MeterSampled, Timer
from terminal.core.handlers.base import (
    METER_FAULT,
    Result,
    _cost,
    _fold_sample,
    _notice,
    _open,
    _rest,
    _tariff,
)
from terminal.core.kiosk import AwaitingVehicle, Charging, Finishing, Kiosk, Receipt, Suspended
from terminal.core.session import CardKind, Session, Status
from terminal.money import Money


def receipt_id_for(session_id: str) -> str:
    """A short receipt id for the driver (QR, portal), derived from the session id: 16
    base32 characters of SHA-256, so two sessions never share one in practice (80 bits)."""
    digest = hashlib.sha256(session_id.encode()).digest()[:10]
    return base64.b32encode(digest).decode()


def _settle(k: Kiosk, session: Session, e: Event) -> Result:
    """Decide the one capture or void for `session` and show the receipt."""
    amount = _cost(session) if session.meterage is not None else Money.zero(session.currency)
    receipt_id = receipt_id_for(session.session_id)
    actions: list[Action]
    if session.energy_wh <= 0 or amount.minor <= 0:
        session = replace(session, status=Status.VOIDING, amount=Money.zero(session.currency))
        actions = [
            Record(session=session),
            Void(session_id=session.session_id, reason=session.end_reason or "no_energy"),
        ]
        bill = None
    else:
        assert session.meterage is not None
        # The receipt totals what is captured: a bill over the cap gets a LIMIT line.
        bill = limit_to(session.meterage.bill(), amount)
        session = replace(session, status=Status.CAPTURING, amount=amount)
        actions = [
            Record(session=session),
            Capture(
                session_id=session.session_id,
                amount=amount,
                energy_wh=session.energy_wh,
                bill=bill,
                receipt_id=receipt_id,
            ),
        ]
    if session.charging_started_at is not None and session.start_register_wh is not None:
        # OCMF "E": the register the bill was made from (begin + the energy billed).
        actions.append(
            TakeSignedReading(
                session_id=session.session_id,
                kind="end",
                register_wh=session.start_register_wh + session.energy_wh,
                at=session.ended_at or e.at,
            )
        )
    receipt = screens.Receipt(
        receipt_id=receipt_id,
        url=f"{k.rules.receipt_url.rstrip('/')}/{receipt_id}",
        station=k.rules.station,
        tariff=_tariff(k, session).name,
        card=session.card.masked(),
        started_at=session.started_at.isoformat(),
        ended_at=(session.ended_at or e.at).isoformat(),
        energy_wh=session.energy_wh,
        bill=bill,
        total=session.amount or Money.zero(session.currency),
        end_reason=session.end_reason or "",
    )
    actions += [
        CancelTimer(timer=Timer.SUSPENDED),
        ShowScreen(screen=receipt),
        StartTimer(timer=Timer.RECEIPT, after_ms=k.rules.receipt_ms),
    ]
    if session.card.kind in _LINKABLE:
        # The tap proved the card is at hand: a code on the receipt links it to the
        # driver's account on the portal (`LinkCodeIssued`).
        actions.append(RequestLinkCode(session_id=session.session_id))
    return replace(k, phase=Receipt(session=session, shown=receipt)), tuple(actions)


_LINKABLE = (CardKind.PAYMENT, CardKind.ID_TOKEN)  # a web payment has no card to link


def _link_code_issued(k: Kiosk, e: Event) -> Result:
    """The receipt of the session the code is for shows it; anywhere else it came too late
    (the next session or the idle screen began) and is dropped."""
    assert isinstance(e, LinkCodeIssued)
    phase = k.phase
    if (
        not isinstance(phase, Receipt)
        or phase.shown is None
        or phase.session.session_id != e.session_id
        or e.valid_ms <= 0
    ):
        return k, ()
    shown = replace(phase.shown, link_code=e.code)
    return replace(k, phase=replace(phase, shown=shown)), (ShowScreen(screen=shown),)


def _abandon(k: Kiosk, session: Session, reason: str) -> tuple[Session, tuple[Action, ...]]:
    """Give up a hold that never saw energy: record, then queue the void."""
    session = replace(
        session, status=Status.VOIDING, end_reason=reason, amount=Money.zero(session.currency)
    )
    return session, (
        WithdrawEnergy(),
        Record(session=session),
        Void(session_id=session.session_id, reason=reason),
        CancelTimer(timer=Timer.AUTHORIZATION),
        CancelTimer(timer=Timer.PLUG_IN),
    )


def _stop(k: Kiosk, session: Session, e: Event, reason: str) -> Result:
    """End a session that may have delivered energy: contactor open first, then the final
    reading (unless the meter is what failed), then settle."""
    k, opened = _open(k)
    session = replace(session, status=Status.FINISHING, end_reason=reason, ended_at=e.at)
    actions: tuple[Action, ...] = (
        *opened,
        WithdrawEnergy(),
        CancelTimer(timer=Timer.SUSPENDED),
        CancelTimer(timer=Timer.PILOT_RELEASE),
        Record(session=session),
    )
    if reason == METER_FAULT:
        # The meter failed: settle on the last good reading; energy is never guessed.
        k2, settle = _settle(k, session, e)
        return k2, actions + settle
    return replace(k, phase=Finishing(session=session)), (
        *actions,
        ShowScreen(screen=screens.Stopping(reason=reason)),
        ReadMeter(),
    )


def _release(k: Kiosk, session: Session, e: Event, reason: str) -> Result:
    """End a session normally: with energy flowing, the PWM goes off first and the contactor
    opens when the vehicle has ended the load (C→B) or `pilot_release_ms` has passed
    (IEC 61851-1 Annex A); otherwise (or with a pilot the kiosk only reads) at once. Faults
    never come here: they open at once."""
    if not (k.rules.pwm_control and k.contactor_closed and k.pilot.wants_energy):
        return _stop(k, session, e, reason)
    return replace(k, phase=Charging(session=session, stopping=reason)), (
        WithdrawEnergy(),
        StartTimer(timer=Timer.PILOT_RELEASE, after_ms=k.rules.pilot_release_ms),
        ShowScreen(screen=screens.Stopping(reason=reason)),
    )


def _released(k: Kiosk, e: Event) -> Result:
    """The vehicle did not leave C in time: open anyway, and say so."""
    assert isinstance(k.phase, Charging) and k.phase.stopping is not None
    reason = k.phase.stopping
    k2, acts = _stop(k, k.phase.session, e, reason)
    return k2, (*acts, Report(kind="pilot_release_timeout", detail=reason))


def _tap_in_session(k: Kiosk, e: Event) -> Result:
    """Only the card that started a session can stop it."""
    assert isinstance(e, CardPresented)
    session = k.session
    assert session is not None
    if e.card.token != session.card.token:
        return _notice(k, "in-use")
    phase = k.phase
    if isinstance(phase, AwaitingVehicle):
        _, abandon = _abandon(k, session, "cancelled")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Notice(kind="cancelled")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    if isinstance(phase, Charging) and phase.stopping is not None:
        return k, ()  # already stopping
    if isinstance(phase, Charging | Suspended):
        return _release(k, session, e, "card")
    return k, ()  # Authorizing or Finishing: a second tap of the same card means nothing


def _sample_finishing(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, MeterSampled) and isinstance(k.phase, Finishing)
    session = k.phase.session
    if k.register_wh is not None and e.energy_wh < k.register_wh:
        return _settle(replace(k, faults=k.faults | {METER_FAULT}), session, e)
    k = replace(k, register_wh=e.energy_wh)
    if session.meterage is not None:
        session = _fold_sample(session, e, k, charging=False)
    return _settle(k, session, e)


def _meter_failed_finishing(k: Kiosk, e: Event) -> Result:
    assert isinstance(k.phase, Finishing)
    session = k.phase.session
    k = replace(k, faults=k.faults | {METER_FAULT})
    k2, acts = _settle(k, session, e)
    return k2, (Report(kind="fault", detail=METER_FAULT), *acts)
