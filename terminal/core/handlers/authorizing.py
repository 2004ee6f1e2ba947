"""Authorizing: the gateway's answer to a hold (approved, partial, declined, or none, where
the offline policy may start the session on a local decision), and its answer to the kiosk's
"started" for a session paid on the gateway's page."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from terminal.core import screens
from terminal.core.actions import CancelTimer, OfferEnergy, Record, Report, ShowScreen, StartTimer
from terminal.core.current import offered_current
from terminal.core.events import AuthorizationAnswered, AuthOutcome, Event, Timer
from terminal.core.handlers.base import Result, _rest
from terminal.core.handlers.charging import _begin_charging, _may_charge
from terminal.core.handlers.ending import _abandon
from terminal.core.kiosk import Authorizing, AwaitingVehicle, Kiosk
from terminal.core.session import CardKind, LocalStanding, Session, Status
from terminal.money import Money


def _answered(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, AuthorizationAnswered) and isinstance(k.phase, Authorizing)
    session = k.phase.session
    if e.session_id != session.session_id:
        return k, ()  # a late answer for an abandoned session: its void is already queued
    if _paid_at_gateway(session):
        return _web_start_answered(k, e)
    if e.outcome is AuthOutcome.DECLINED:
        session = replace(session, status=Status.DECLINED, end_reason=e.reason or "declined")
        k2, rest = _rest(k, e.at, CancelTimer(timer=Timer.AUTHORIZATION), Record(session=session))
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Declined(reason=e.reason, pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    if e.outcome is AuthOutcome.NO_ANSWER or e.amount is None:
        return _unanswered(k, e)
    approved = e.amount.min(session.hold)
    if approved < k.rules.min_authorized or k.register_wh is None:
        session, abandon = _abandon(k, session, "partial_too_low")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.Declined(reason="amount too low", pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    return _hold_approved(k, session, approved, e)


def _offline_cap(k: Kiosk, session: Session, standing: LocalStanding, at: datetime) -> Money | None:
    """The cap a session may start with although the gateway gave no answer, or None (see
    `OfflinePolicy`). The store-and-forward caps hold exactly: this session's cap is counted
    into the outstanding amount and number before they are compared."""
    policy = k.rules.offline
    if standing.denied:
        return None
    if session.card.kind is CardKind.ID_TOKEN:
        return session.hold if policy.local_list and standing.listed else None
    if (
        not policy.store_and_forward
        or policy.max_session is None
        or policy.max_outstanding is None
        or policy.max_session.currency != session.currency
    ):
        return None
    cap = session.hold.min(policy.max_session)
    if standing.outstanding_count + 1 > policy.max_count:
        return None
    if standing.outstanding_minor + cap.minor > policy.max_outstanding.minor:
        return None
    oldest = standing.oldest_outstanding
    if oldest is not None and at - oldest > timedelta(milliseconds=policy.max_age_ms):
        return None
    return cap


def _unanswered(k: Kiosk, e: Event) -> Result:
    """The gateway gave no answer (unreachable, timed out, malformed): start on the local
    decision if the offline policy allows it, the authorization staying queued for when the
    gateway is back; else tell the driver and release the hold."""
    assert isinstance(k.phase, Authorizing)
    session, standing = k.phase.session, k.phase.standing
    # A session paid at the gateway starts only on its word (`_web_start_answered`).
    web = _paid_at_gateway(session)
    cap = None if web else _offline_cap(k, session, standing, e.at)
    if cap is not None and cap >= k.rules.min_authorized and k.register_wh is not None:
        k2, acts = _hold_approved(k, session, cap, e)
        return k2, (
            Report(kind="offline_start", detail=f"{session.session_id} cap={cap.minor}"),
            *acts,
        )
    reason = "denied_offline" if standing.denied else "start_unconfirmed" if web else "no_answer"
    session, abandon = _abandon(k, session, reason)
    k2, rest = _rest(k, e.at, *abandon)
    screen: screens.Screen = (
        screens.Declined(reason="not allowed", pay_url=k.pay_url or "")
        if standing.denied
        else screens.NoAnswer(pay_url=k.pay_url or "")
    )
    return k2, (
        *rest[:-1],
        ShowScreen(screen=screen),
        StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
    )


def _hold_approved(k: Kiosk, session: Session, approved: Money, e: Event) -> Result:
    """The session may go on with `approved` as its cost cap: charge, or wait for the car."""
    session = replace(
        session,
        status=Status.AUTHORIZED,
        authorized=approved,
        start_register_wh=k.register_wh,
    )
    if not k.available and k.faults:
        session, abandon = _abandon(k, session, "fault")
        return _rest(k, e.at, *abandon)
    current = offered_current(k.rules, k.current_limit_a, session)
    session = replace(session, offered_a=current)
    offer = OfferEnergy(current_a=current)
    if _may_charge(k):
        k2, acts = _begin_charging(k, session, e)
        return k2, (CancelTimer(timer=Timer.AUTHORIZATION), offer, *acts)
    k = replace(k, phase=AwaitingVehicle(session=session))
    return k, (
        CancelTimer(timer=Timer.AUTHORIZATION),
        Record(session=session),
        offer,
        StartTimer(timer=Timer.PLUG_IN, after_ms=k.rules.plug_in_timeout_ms),
        ShowScreen(
            screen=screens.PlugIn(
                authorized=approved,
                connected=k.pilot.connected,
                partial=approved < session.hold,
            )
        ),
    )


def _paid_at_gateway(session: Session) -> bool:
    """A session paid on the gateway's page (`_web_payment` makes its card), as opposed to one
    a CSMS's payment service holds (OCPP C25, a web card at a tap)."""
    return session.card.kind is CardKind.WEB and session.card.token == f"web:{session.session_id}"


def _web_start_answered(k: Kiosk, e: AuthorizationAnswered) -> Result:
    """The gateway's answer to this kiosk's "started" for a web-paid session. Taken: the
    session goes on with its cost limit as the cap. Refused (the gateway released the hold:
    the start expired before the answer came): abandoned, nothing offered. No answer yet:
    the answer stays queued and the authorization timer decides."""
    assert isinstance(k.phase, Authorizing)
    session = k.phase.session
    if e.outcome is AuthOutcome.NO_ANSWER:
        return k, ()
    if e.outcome is AuthOutcome.DECLINED:
        session, abandon = _abandon(k, session, "start_refused")
        k2, rest = _rest(k, e.at, *abandon)
        return k2, (
            *rest[:-1],
            ShowScreen(screen=screens.NoAnswer(pay_url=k.pay_url or "")),
            StartTimer(timer=Timer.NOTICE, after_ms=k.rules.notice_ms),
        )
    return _hold_approved(k, session, session.hold, e)
