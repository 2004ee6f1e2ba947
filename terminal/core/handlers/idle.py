"""Between sessions: how a session starts (a tap, a payment on the phone through the kiosk's QR
code, the charger kept for a web payment the CSMS runs, OCPP 2.1 C25), a card that cannot
start one, and what the idle screen shows (the tariff, the pay code)."""

from __future__ import annotations

from dataclasses import replace

from terminal.core import screens
from terminal.core.actions import (
    AnswerStart,
    CancelTimer,
    Record,
    RequestAuthorization,
    ShowScreen,
    StartTimer,
)
from terminal.core.events import (
    CardPresented,
    CardProblem,
    CardUnreadable,
    Event,
    PayCodeChanged,
    TariffChanged,
    Timer,
    WebPaymentAuthorized,
    WebPaymentStarted,
)
from terminal.core.handlers.base import Result, _idle_screen, _notice
from terminal.core.kiosk import Authorizing, Booting, Idle, Kiosk, Receipt
from terminal.core.session import Card, CardKind, Session, Status


def _start_session(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, CardPresented)
    if not k.available:
        return _notice(k, "out-of-order")
    session = Session(
        session_id=e.session_id,
        card=e.card,
        hold=k.rules.hold,
        tariff_key=k.rules.tariff_key,
        tariff=k.rules.tariff,
        status=Status.AUTHORIZING,
        started_at=e.at,
    )
    k = replace(k, phase=Authorizing(session=session, standing=e.standing))
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        Record(session=session),
        RequestAuthorization(session_id=session.session_id, amount=session.hold, card=e.card),
        StartTimer(timer=Timer.AUTHORIZATION, after_ms=k.rules.authorization_timeout_ms),
        ShowScreen(screen=screens.Authorizing(card=e.card.masked())),
    )


def _card_unreadable(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, CardUnreadable)
    kind = {
        CardProblem.TAP_AGAIN: "tap-again",
        CardProblem.NOT_ACCEPTED: "not-accepted",
        CardProblem.EXPIRED: "expired",
    }[e.problem]
    return _notice(k, kind)


def _tap_unavailable(k: Kiosk, e: Event) -> Result:
    return _notice(k, "out-of-order")


def _web_refusal(k: Kiosk, e: WebPaymentAuthorized) -> str | None:
    """Why a web-paid session may not start now, or None. The gateway releases the hold on
    any of these; the driver's phone page says so."""
    if isinstance(k.phase, Booting):
        return "starting"
    if not k.available:
        return "unavailable"
    if not isinstance(k.phase, Idle | Receipt) or k.web_payment:
        return "busy"  # a session, or a web payment the CSMS runs, has the charger
    if e.at >= e.expires_at:
        return "expired"  # the code's lifetime is over: never start after it
    limit = k.rules.ceiling or k.rules.hold
    if e.cost_limit.currency != limit.currency:
        return "currency"
    if e.cost_limit > limit:
        return "over_limit"
    if e.cost_limit < k.rules.min_authorized:
        return "under_minimum"
    if k.register_wh is None:
        return "meter"
    return None


def _web_payment(k: Kiosk, e: Event) -> Result:
    """Take a session the gateway holds the money for, with its cost limit as the cap, or
    answer why not. Taken, the session is recorded and answered "started" in the same
    journal transaction (an answer "started" always has a session to settle), and waits in
    `Authorizing` for the gateway to take that answer: the gateway refuses it once it has
    released the hold (the start expired while the kiosk was away), so energy is offered only
    on a hold still in force (`_web_start_answered`). No answer by the authorization timeout:
    the session is abandoned and its hold released, as a card's would be."""
    assert isinstance(e, WebPaymentAuthorized)
    refusal = _web_refusal(k, e)
    if refusal is not None:
        answer = AnswerStart(
            command_id=e.command_id, session_id=e.session_id, started=False, reason=refusal
        )
        return k, (answer,)
    card = Card(kind=CardKind.WEB, token=f"web:{e.session_id}", brand=e.brand, last4=e.last4)
    session = Session(
        session_id=e.session_id,
        card=card,
        hold=e.cost_limit,
        tariff_key=k.rules.tariff_key,
        tariff=k.rules.tariff,
        status=Status.AUTHORIZING,
        started_at=e.at,
    )
    k = replace(k, phase=Authorizing(session=session))
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        Record(session=session),
        AnswerStart(command_id=e.command_id, session_id=e.session_id, started=True),
        StartTimer(timer=Timer.AUTHORIZATION, after_ms=k.rules.authorization_timeout_ms),
        ShowScreen(screen=screens.Authorizing(card=card.masked())),
    )


def _web_payment_started(k: Kiosk, e: Event) -> Result:
    """Keep the charger for the driver paying on the CSMS's page: between sessions and
    available, the kiosk shows "payment in progress on your phone" until the CSMS starts the
    transaction or `timeout_ms` passes (C25). Busy, unavailable or starting: nothing changes
    (NotifyWebPaymentStarted has no answer to refuse with; the CSMS's start is refused)."""
    assert isinstance(e, WebPaymentStarted)
    if not isinstance(k.phase, Idle | Receipt) or not k.available or e.timeout_ms <= 0:
        return k, ()
    k = replace(k, phase=Idle(), web_payment=True)
    return k, (
        CancelTimer(timer=Timer.NOTICE),
        CancelTimer(timer=Timer.RECEIPT),
        StartTimer(timer=Timer.WEB_PAYMENT, after_ms=e.timeout_ms),
        ShowScreen(screen=_idle_screen(k, e.at)),
    )


def _web_payment_over(k: Kiosk, e: Event) -> Result:
    """No start came in time: the charger is free again."""
    k = replace(k, web_payment=False)
    if isinstance(k.phase, Idle):
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _tap_idle(k: Kiosk, e: Event) -> Result:
    """A tap starts a session, unless a web payment keeps the charger: then only the CSMS's
    start for it (a `CardKind.WEB` card) does, and any other card is told the charger is
    reserved."""
    assert isinstance(e, CardPresented)
    if not k.web_payment:
        return _start_session(k, e)
    if e.card.kind is not CardKind.WEB or not k.available:
        return _notice(k, "reserved")
    k2, acts = _start_session(replace(k, web_payment=False), e)
    return k2, (CancelTimer(timer=Timer.WEB_PAYMENT), *acts)


def _tariff_changed(k: Kiosk, e: Event) -> Result:
    """New sessions are priced by the tariff received; the idle screen shows its price at
    once (AFIR: the price before the start). A running session keeps its own."""
    assert isinstance(e, TariffChanged)
    k = replace(k, rules=replace(k.rules, tariff=e.tariff, tariff_key=e.key))
    if isinstance(k.phase, Idle) and k.available:
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _pay_code(k: Kiosk, e: Event, url: str | None) -> Result:
    """Show the new code (or none) at once where the idle screen is up; elsewhere it shows
    when the kiosk is idle again."""
    k = replace(k, pay_url=url)
    if isinstance(k.phase, Idle) and k.available:
        return k, (ShowScreen(screen=_idle_screen(k, e.at)),)
    return k, ()


def _pay_code_changed(k: Kiosk, e: Event) -> Result:
    assert isinstance(e, PayCodeChanged)
    if e.url is None or e.valid_ms <= 0:
        k2, acts = _pay_code(k, e, None)
        return k2, (CancelTimer(timer=Timer.PAY_CODE), *acts)
    k2, acts = _pay_code(k, e, e.url)
    return k2, (StartTimer(timer=Timer.PAY_CODE, after_ms=e.valid_ms), *acts)
