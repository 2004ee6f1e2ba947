"""The offline policy is a session rule in the machine: what may start when the gateway gives
no answer, decided from the facts the shell stamps into the tap (`LocalStanding`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from terminal.core import screens
from terminal.core.actions import Report, RequestAuthorization, ShowScreen, Void
from terminal.core.events import AuthOutcome, CardPresented, Timer
from terminal.core.kiosk import AwaitingVehicle, Idle, OfflinePolicy, Rules
from terminal.core.session import Card, CardKind, LocalStanding
from terminal.money import Money
from tests.core.test_scenarios import EUR, RULES, T0, VISA, Walk, of

RFID = Card(kind=CardKind.ID_TOKEN, token="tok-rfid-0000001", brand="RFID", last4="")
SAF = replace(
    RULES,
    offline=OfflinePolicy(
        store_and_forward=True,
        max_session=Money(1000, EUR),
        max_outstanding=Money(2500, EUR),
        max_count=3,
        max_age_ms=3_600_000,
    ),
)


def tap_unanswered(
    rules: Rules, card: Card, standing: LocalStanding, *, by_timer: bool = False
) -> tuple[Walk, tuple[object, ...]]:
    walk = Walk(rules)
    walk.boot()
    walk.ids += 1
    walk.event(CardPresented, card=card, session_id="session-0001", standing=standing)
    if by_timer:
        return walk, walk.timer(Timer.AUTHORIZATION, after_ms=rules.authorization_timeout_ms)
    return walk, walk.answer(AuthOutcome.NO_ANSWER)


def started(walk: Walk) -> Money | None:
    phase = walk.kiosk.phase
    return phase.session.authorized if isinstance(phase, AwaitingVehicle) else None


@pytest.mark.parametrize("by_timer", [False, True])
def test_by_default_a_bank_card_needs_an_online_answer(by_timer: bool) -> None:
    walk, actions = tap_unanswered(RULES, VISA, LocalStanding(), by_timer=by_timer)
    assert isinstance(walk.kiosk.phase, Idle)
    assert of(Void, actions)  # the queued authorization is overtaken by its void
    assert [a.screen for a in of(ShowScreen, actions)] == [screens.NoAnswer()]


def test_an_id_token_on_the_local_list_starts_offline_with_the_hold_as_cap() -> None:
    walk, actions = tap_unanswered(RULES, RFID, LocalStanding(listed=True))
    assert started(walk) == RULES.hold
    assert not of(Void, actions)  # the authorization stays queued for when the gateway is back
    assert [r.kind for r in of(Report, actions)] == ["offline_start"]


def test_an_id_token_not_on_the_list_gets_no_answer() -> None:
    walk, _ = tap_unanswered(RULES, RFID, LocalStanding(listed=False))
    assert started(walk) is None


def test_the_local_list_can_be_switched_off() -> None:
    rules = replace(RULES, offline=OfflinePolicy(local_list=False))
    walk, _ = tap_unanswered(rules, RFID, LocalStanding(listed=True))
    assert started(walk) is None


@pytest.mark.parametrize(("card", "rules"), [(RFID, RULES), (VISA, SAF)])
def test_the_deny_list_wins_offline_and_the_driver_is_told(card: Card, rules: Rules) -> None:
    walk, actions = tap_unanswered(rules, card, LocalStanding(listed=True, denied=True))
    assert started(walk) is None
    assert [a.screen for a in of(ShowScreen, actions)] == [screens.Declined(reason="not allowed")]
    [void] = of(Void, actions)
    assert void.reason == "denied_offline"


def test_store_and_forward_starts_a_bank_card_with_the_session_cap() -> None:
    walk, _ = tap_unanswered(SAF, VISA, LocalStanding())
    assert started(walk) == Money(1000, EUR)


@pytest.mark.parametrize(
    ("outstanding", "count", "allowed"),
    [
        (1500, 2, True),  # 1500 + 1000 = 2500: exactly the cap
        (1501, 1, False),  # one minor unit over the total
        (0, 2, True),  # the third session: exactly the count
        (0, 3, False),  # a fourth: one over the count
    ],
)
def test_store_and_forward_caps_hold_exactly(outstanding: int, count: int, allowed: bool) -> None:
    standing = LocalStanding(outstanding_minor=outstanding, outstanding_count=count)
    walk, _ = tap_unanswered(SAF, VISA, standing)
    assert (started(walk) is not None) is allowed


@pytest.mark.parametrize(("age_ms", "allowed"), [(3_600_000, True), (3_600_001, False)])
def test_store_and_forward_age_cap_holds_exactly(age_ms: int, allowed: bool) -> None:
    walk = Walk(SAF)
    walk.boot()
    decided_at = T0 + timedelta(milliseconds=walk.ms + 20)  # the tap, then the answer: 10 ms each
    standing = LocalStanding(
        outstanding_minor=100,
        outstanding_count=1,
        oldest_outstanding=decided_at - timedelta(milliseconds=age_ms),
    )
    walk.event(CardPresented, card=VISA, session_id="session-0001", standing=standing)
    walk.answer(AuthOutcome.NO_ANSWER)
    assert (started(walk) is not None) is allowed


def test_a_session_cap_below_the_minimum_does_not_start() -> None:
    rules = replace(SAF, min_authorized=Money(1001, EUR))
    walk, _ = tap_unanswered(rules, VISA, LocalStanding())
    assert started(walk) is None


def test_an_online_answer_is_never_replaced_by_the_local_decision() -> None:
    walk = Walk(SAF)
    walk.boot()
    actions = walk.event(
        CardPresented,
        card=RFID,
        session_id="session-0001",
        standing=LocalStanding(listed=True),
    )
    assert of(RequestAuthorization, actions)  # the gateway is always asked first
    walk.answer(AuthOutcome.DECLINED)
    assert isinstance(walk.kiosk.phase, Idle)
