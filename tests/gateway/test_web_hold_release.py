"""A phone's payment whose gateway died before the kiosk was asked to start: the hold is
never left for long. A code is spent in the transaction that writes its start command, so a
gateway dying after the processor's approval leaves the code still being paid, which
`WaitingPayments` finishes within seconds (the start sent, or the hold released when the
code has expired); a code spent for a late payment whose release was cut short is released
at the next `CommandExpiry` round; a start the kiosk never answers is given up 2 minutes
after the code's lifetime. (Before: such holds waited 25 minutes.) Both ledger back-ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from gateway.commands import PENDING
from gateway.pay.checkout import Checkout, WaitingPayments
from gateway.pay.codes import PAYING, SPENT, Offer, PayCodes
from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD
from gateway.server import EmbeddedGateway
from terminal.money import Money

TERMINAL = "kiosk-0001"
OFFER = Offer(
    station="Example Street 1", hold_minor=2000, currency="EUR", price={"en": []}, language="en"
)


@pytest.fixture
def gateway(db_url: str) -> Iterator[EmbeddedGateway]:
    """Not served: its jobs do not run by themselves; each test runs the one it means."""
    gw = EmbeddedGateway(db_url=db_url)
    try:
        yield gw
    finally:
        gw.close()


def checkout(gw: EmbeddedGateway) -> Checkout:
    return Checkout(PayCodes(gw.ledger), gw.payments, gw.commands)


def held_on_a_code(gw: EmbeddedGateway, aid: str) -> str:
    """What the payment page did before its gateway died: the code claimed, the hold
    approved at the processor; the start not written. The code."""
    codes = PayCodes(gw.ledger)
    code = codes.for_terminal(TERMINAL, OFFER).code
    assert codes.claim(code, aid)
    card = CardRef(kind=WEB_CARD, token="sim_web_4242", brand="Test card", last4="4242",
                   expiry=None, payload={})  # fmt: skip
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(2000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    assert gw.commands.state_of(aid) is None
    return code


def later(gw: EmbeddedGateway, by: timedelta) -> None:
    at = gw.ledger.clock() + by
    gw.ledger.clock = lambda: at


def status(gw: EmbeddedGateway, aid: str) -> tuple[str, str | None]:
    row = gw.ledger.fetch(aid)
    assert row is not None
    return row.status, row.void_reason


def test_a_hold_paid_before_the_gateway_died_is_sent_to_the_kiosk_within_seconds(
    gateway: EmbeddedGateway,
) -> None:
    code = held_on_a_code(gateway, "web-rel-0001")
    assert WaitingPayments(checkout(gateway)).work() == 1
    assert gateway.commands.state_of("web-rel-0001") == PENDING
    found = PayCodes(gateway.ledger).get(code)
    assert found is not None and found.state == SPENT
    assert status(gateway, "web-rel-0001") == ("approved", None)


def test_found_after_its_code_expired_it_is_released_and_never_sent(
    gateway: EmbeddedGateway,
) -> None:
    held_on_a_code(gateway, "web-rel-0002")
    later(gateway, timedelta(minutes=15, seconds=1))  # the code's lifetime
    WaitingPayments(checkout(gateway)).work()
    assert status(gateway, "web-rel-0002") == ("voided", "paid_after_code_expired")
    assert gateway.commands.state_of("web-rel-0002") is None


def test_a_code_is_spent_only_together_with_its_start(gateway: EmbeddedGateway) -> None:
    code = held_on_a_code(gateway, "web-rel-0003")
    codes = PayCodes(gateway.ledger)
    # Another request spent the code first (the page's refresh racing a webhook): no second
    # start is written, and the code is not spent twice.
    assert codes.spend(code, "web-rel-0003")
    refused = gateway.commands.start(
        "web-rel-0003",
        expires_at=gateway.ledger.clock() + timedelta(minutes=5),
        brand="Visa",
        last4="4242",
        guard=lambda conn: codes.spend_in(conn, code, "web-rel-0003"),
    )
    assert refused is None and gateway.commands.state_of("web-rel-0003") is None


def test_a_late_payment_whose_release_was_cut_short_is_released_at_the_next_round(
    gateway: EmbeddedGateway,
) -> None:
    code = held_on_a_code(gateway, "web-rel-0004")
    later(gateway, timedelta(minutes=15, seconds=1))
    # The page found it paid late and spent the code; the gateway died before the release.
    assert PayCodes(gateway.ledger).spend(code, "web-rel-0004")
    assert gateway.commands.expire() == 1
    assert status(gateway, "web-rel-0004") == ("voided", "never_started")


def test_a_code_still_open_keeps_its_hold_for_the_page_to_finish(
    gateway: EmbeddedGateway,
) -> None:
    code = held_on_a_code(gateway, "web-rel-0005")
    assert gateway.commands.expire() == 0  # WaitingPayments' to finish, not the expiry's
    found = PayCodes(gateway.ledger).get(code)
    assert found is not None and found.state == PAYING
    assert status(gateway, "web-rel-0005") == ("approved", None)


def test_a_start_the_kiosk_never_answers_is_released_two_minutes_after_the_code(
    gateway: EmbeddedGateway,
) -> None:
    held_on_a_code(gateway, "web-rel-0006")
    WaitingPayments(checkout(gateway)).work()  # the start, valid for the code's 15 minutes
    later(gateway, timedelta(minutes=16, seconds=59))
    assert gateway.commands.expire() == 0  # the kiosk's "started" may still be on its way
    later(gateway, timedelta(seconds=2))
    assert gateway.commands.expire() == 1
    assert status(gateway, "web-rel-0006") == ("voided", "start_expired")
    assert gateway.commands.state_of("web-rel-0006") == "expired"
