"""The conformance suite: every adapter, against its own local peer, keeps the port's rules.

Parametrized over every adapter (`conftest.ADAPTERS`: simulated, Stripe on localstripe, Adyen
on Prism with `AdyenBooks`, Lightning on LNbits); none is skipped. Nothing here names a
processor: where processors differ, the test reads what the adapter declares
(`Processor.capabilities`), and the harness (`harnesses.py`) brings a call to its final
outcome the way that processor does (an invoice paid by the payer, a notification). What a
peer does not model is tested per adapter against recorded answers taken from the
processor's documentation (`test_<adapter>.py`).
"""

from __future__ import annotations

import logging

import pytest

from gateway.processors import CardRef, ClearCard
from gateway.processors.methods import PAYMENT
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaymentState,
    ProcessorUnreachable,
    Result,
)
from terminal.money import Money
from tests.processors.conftest import Harness, new_key, new_payment_id

CLEAR_PAN = "4111111111111111"


def _hold(h: Harness, minor: int = 5000, card: CardRef | None = None, key: str = "") -> Result:
    asked = {
        "key": key or new_key(),
        "payment_id": new_payment_id(),
        "card": card or h.approving(),
        "amount": Money(minor, h.currency),
    }
    return h.settle(h.processor.hold(**asked), hold=asked)


def _held(h: Harness, minor: int = 5000) -> str:
    result = _hold(h, minor)
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount == Money(minor, h.currency)
    assert result.reference
    return result.reference


def _capture(h: Harness, reference: str, minor: int, key: str = "") -> Result:
    amount = Money(minor, h.currency)
    return h.settle(h.processor.capture(key=key or new_key(), reference=reference, amount=amount))


def _release(h: Harness, reference: str, minor: int = 5000, key: str = "") -> Result:
    amount = Money(minor, h.currency)
    return h.settle(h.processor.release(key=key or new_key(), reference=reference, amount=amount))


def _refund(h: Harness, reference: str, minor: int, key: str = "") -> Result:
    """A refund sent where this processor can send it: back along the payment, or to the
    payer's destination (`Capability.REFUND_TO_DESTINATION`)."""
    amount = Money(minor, h.currency)
    destination = (
        h.destination(amount) if Capability.REFUND_TO_DESTINATION in h.capabilities else None
    )
    result = h.processor.refund(
        key=key or new_key(), reference=reference, amount=amount, destination=destination
    )
    return h.settle(result)


def _refused(result: Result, *codes: ErrorCode) -> None:
    assert result.outcome is Outcome.DECLINED, result
    assert result.amount.minor == 0
    assert result.error is not None, result
    assert not result.error.retryable, result.error
    if codes:
        assert result.error.code in codes, result.error


def test_every_adapter_can_be_settled_asked_and_refunded(harness: Harness) -> None:
    caps = harness.capabilities
    # A payment's state is known by asking, or from the processor's notifications.
    assert Capability.STATUS in caps or {Capability.NOTIFIED, Capability.WEBHOOK} <= caps
    assert Capability.REFUND in caps or Capability.REFUND_TO_DESTINATION in caps
    assert Capability.PARTIAL_CAPTURE in caps  # a session captures what it priced
    # A phone's web payment and the kiosk's card data are different paths (docs/processors.md).
    assert (Capability.WEB in caps) != (Capability.CARD_PRESENT in caps)


def test_a_hold_is_held_at_the_processor(harness: Harness) -> None:
    reference = _held(harness, 5000)

    now = harness.state(reference)
    assert now.state is PaymentState.HELD
    assert now.held == Money(5000, harness.currency)
    assert now.captured == Money(0, harness.currency)


def test_a_declined_hold_says_why_holds_nothing_and_is_not_retryable(harness: Harness) -> None:
    result = _hold(harness, 5000, card=harness.declining())

    _refused(result, ErrorCode.CARD_DECLINED, ErrorCode.INSUFFICIENT_FUNDS)
    assert result.error is not None and result.error.processor_code
    if result.reference:
        assert harness.state(result.reference).state is not PaymentState.HELD
        late = _capture(harness, result.reference, 100)
        assert late.outcome is Outcome.DECLINED


def test_a_partial_capture_captures_that_much(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = _capture(harness, reference, 1234)
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount == Money(1234, harness.currency)
    now = harness.state(reference)
    assert now.state is PaymentState.CAPTURED
    assert now.captured == Money(1234, harness.currency)
    assert now.refunded == Money(0, harness.currency)
    if Capability.PREPAID in harness.capabilities:
        # Paid in full up front: what was not captured is owed back to the payer, recorded.
        assert result.raw["owed_back_minor"] == 5000 - 1234


def test_a_capture_above_the_hold_is_refused_and_changes_nothing(harness: Harness) -> None:
    reference = _held(harness, 5000)

    _refused(_capture(harness, reference, 5001), ErrorCode.AMOUNT_INVALID)
    now = harness.state(reference)
    assert now.state is PaymentState.HELD
    assert now.held == Money(5000, harness.currency)


def test_a_release_frees_the_hold_and_nothing_can_be_captured_after(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = _release(harness, reference)
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount.minor == 0
    assert harness.state(reference).state is PaymentState.RELEASED
    _refused(_capture(harness, reference, 100), ErrorCode.ALREADY_SETTLED)
    if Capability.PREPAID in harness.capabilities:
        assert result.raw["owed_back_minor"] == 5000  # paid, none of it kept


def test_partial_refunds_sum_to_the_capture_and_one_more_is_refused(harness: Harness) -> None:
    reference = _held(harness, 5000)
    assert _capture(harness, reference, 3000).succeeded

    for minor in (1000, 1500, 500):
        refund = _refund(harness, reference, minor)
        assert refund.outcome is Outcome.APPROVED, refund
        assert refund.amount == Money(minor, harness.currency)
    _refused(_refund(harness, reference, 1), ErrorCode.AMOUNT_INVALID)

    now = harness.state(reference)
    assert now.captured == Money(3000, harness.currency)
    assert now.refunded == Money(3000, harness.currency)


def test_a_refund_of_a_payment_never_captured_is_refused(harness: Harness) -> None:
    reference = _held(harness, 5000)

    _refused(_refund(harness, reference, 100))
    assert harness.state(reference).state is PaymentState.HELD


def test_a_refund_goes_only_where_the_processor_can_send_it(harness: Harness) -> None:
    reference = _held(harness, 5000)
    assert _capture(harness, reference, 3000).succeeded
    amount = Money(100, harness.currency)

    if Capability.REFUND_TO_DESTINATION in harness.capabilities:
        blind = harness.processor.refund(key=new_key(), reference=reference, amount=amount)
        _refused(blind, ErrorCode.UNSUPPORTED)
    else:
        elsewhere = harness.processor.refund(
            key=new_key(), reference=reference, amount=amount, destination="lnbc1somewhere"
        )
        _refused(elsewhere, ErrorCode.INVALID_REQUEST)
    assert harness.state(reference).refunded == Money(0, harness.currency)


def test_an_increment_raises_the_hold_or_is_refused_cleanly(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = harness.settle(
        harness.processor.increment(
            key=new_key(), reference=reference, amount=Money(7500, harness.currency)
        )
    )
    now = harness.state(reference)
    if Capability.INCREMENT in harness.capabilities:
        assert result.outcome is Outcome.APPROVED, result
        assert result.amount == Money(7500, harness.currency)
        assert now.held == Money(7500, harness.currency)
    else:
        _refused(result, ErrorCode.UNSUPPORTED)
        assert now.held == Money(5000, harness.currency)
    assert now.state is PaymentState.HELD


def test_every_money_call_carries_the_gateway_key_to_the_processor(harness: Harness) -> None:
    keys = [new_key() for _ in range(4)]
    reference = _hold(harness, 5000, key=keys[0]).reference
    _capture(harness, reference, 4000, key=keys[1])
    _refund(harness, reference, 100, key=keys[2])
    _release(harness, _held(harness), key=keys[3])

    assert set(keys) <= harness.keys_seen()


def test_an_unreachable_processor_gives_unknown_never_declined(harness: Harness) -> None:
    result = harness.unreachable.hold(
        key=new_key(),
        payment_id=new_payment_id(),
        card=harness.approving(),
        amount=Money(5000, harness.currency),
    )
    assert result.outcome is Outcome.UNKNOWN
    assert result.error is not None and result.error.retryable
    with pytest.raises(ProcessorUnreachable):
        harness.unreachable.status(payment_id="x", reference=harness.unknown_reference)


def test_status_of_a_payment_the_processor_never_saw(harness: Harness) -> None:
    if Capability.STATUS in harness.capabilities:
        now = harness.processor.status(payment_id="", reference=harness.unknown_reference)
        assert now.state is PaymentState.NOT_FOUND
    else:
        # No status published: the port's answer is "unknown for now", never a guess.
        with pytest.raises(ProcessorUnreachable):
            harness.processor.status(payment_id="", reference=harness.unknown_reference)
    assert harness.state(harness.unknown_reference).state is PaymentState.NOT_FOUND


def test_card_data_in_clear_reaches_only_a_card_present_processor(harness: Harness) -> None:
    card = CardRef(
        kind=PAYMENT,
        token="tok",
        brand="visa",
        last4=CLEAR_PAN[-4:],
        expiry="3412",
        payload={},
        clear=ClearCard(pan=CLEAR_PAN, expiry="3412", pan_sequence="01", track2=None, emv=()),
    )
    result = harness.processor.hold(
        key=new_key(), payment_id=new_payment_id(), card=card, amount=Money(5000, harness.currency)
    )
    if Capability.CARD_PRESENT in harness.capabilities:
        assert result.outcome is Outcome.APPROVED, result
    else:
        _refused(result, ErrorCode.UNSUPPORTED)
    assert CLEAR_PAN not in repr(result)
    assert not harness.peer_saw(CLEAR_PAN.encode())  # never stored, never sent


def test_no_secret_or_card_data_reaches_a_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The cards are made first, as the phone page would, outside what is logged here.
    card, other = harness.approving(), harness.approving()
    caplog.set_level(logging.DEBUG)
    hold = _hold(harness, 5000, card=card)
    assert hold.succeeded
    _capture(harness, hold.reference, 3000)
    _refund(harness, hold.reference, 100)
    harness.unreachable.hold(
        key=new_key(),
        payment_id=new_payment_id(),
        card=other,
        amount=Money(5000, harness.currency),
    )
    assert caplog.records or not harness.over_http, "HTTP clients log at DEBUG: we must see it"
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    for secret in harness.secrets:
        assert secret not in logged
