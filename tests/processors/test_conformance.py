"""The conformance suite: every adapter, against its own local peer, keeps the port's rules.

Parametrized over the adapters in `conftest.ADAPTERS`; nothing here knows which processor it
talks to. What a peer does not model is tested per adapter against recorded answers taken from
the processor's documentation (`test_<adapter>.py`).
"""

from __future__ import annotations

import logging

import pytest

from gateway.processors import CardRef, ClearCard
from gateway.processors.port import (
    Capability,
    ErrorCode,
    Outcome,
    PaymentState,
    ProcessorUnreachable,
)
from terminal.money import Money
from tests.processors.conftest import Harness, new_key, new_payment_id

CLEAR_PAN = "4111111111111111"


def _held(h: Harness, minor: int = 5000) -> str:
    result = h.processor.hold(
        key=new_key(),
        payment_id=new_payment_id(),
        card=h.approving(),
        amount=Money(minor, h.currency),
    )
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount == Money(minor, h.currency)
    assert result.reference
    return result.reference


def test_a_hold_is_held_at_the_processor(harness: Harness) -> None:
    reference = _held(harness, 5000)

    now = harness.processor.status(payment_id="", reference=reference)
    assert now.state is PaymentState.HELD
    assert now.held == Money(5000, harness.currency)
    assert now.captured == Money(0, harness.currency)


def test_a_declined_hold_says_why_and_is_not_retryable(harness: Harness) -> None:
    result = harness.processor.hold(
        key=new_key(),
        payment_id=new_payment_id(),
        card=harness.declining(),
        amount=Money(5000, harness.currency),
    )
    assert result.outcome is Outcome.DECLINED
    assert result.amount == Money(0, harness.currency)
    assert result.error is not None
    assert result.error.code in (ErrorCode.CARD_DECLINED, ErrorCode.INSUFFICIENT_FUNDS)
    assert not result.error.retryable
    assert result.error.processor_code


def test_a_partial_capture_captures_that_much(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = harness.processor.capture(
        key=new_key(), reference=reference, amount=Money(1234, harness.currency)
    )
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount == Money(1234, harness.currency)
    now = harness.processor.status(payment_id="", reference=reference)
    assert now.state is PaymentState.CAPTURED
    assert now.captured == Money(1234, harness.currency)
    assert now.refunded == Money(0, harness.currency)


def test_a_capture_above_the_hold_is_refused_and_changes_nothing(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = harness.processor.capture(
        key=new_key(), reference=reference, amount=Money(5001, harness.currency)
    )
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None and not result.error.retryable
    now = harness.processor.status(payment_id="", reference=reference)
    assert now.state is PaymentState.HELD
    assert now.held == Money(5000, harness.currency)


def test_a_release_frees_the_hold_and_nothing_can_be_captured_after(harness: Harness) -> None:
    reference = _held(harness, 5000)

    result = harness.processor.release(
        key=new_key(), reference=reference, amount=Money(5000, harness.currency)
    )
    assert result.outcome is Outcome.APPROVED, result
    assert result.amount.minor == 0
    assert harness.processor.status(payment_id="", reference=reference).state is (
        PaymentState.RELEASED
    )
    late = harness.processor.capture(
        key=new_key(), reference=reference, amount=Money(100, harness.currency)
    )
    assert late.outcome is Outcome.DECLINED
    assert late.error is not None and not late.error.retryable


def test_partial_refunds_sum_to_the_capture_and_one_more_is_refused(harness: Harness) -> None:
    reference = _held(harness, 5000)
    captured = harness.processor.capture(
        key=new_key(), reference=reference, amount=Money(3000, harness.currency)
    )
    assert captured.succeeded

    for minor in (1000, 1500, 500):
        refund = harness.processor.refund(
            key=new_key(), reference=reference, amount=Money(minor, harness.currency)
        )
        assert refund.outcome is Outcome.APPROVED, refund
        assert refund.amount == Money(minor, harness.currency)
    one_more = harness.processor.refund(
        key=new_key(), reference=reference, amount=Money(1, harness.currency)
    )
    assert one_more.outcome is Outcome.DECLINED
    assert one_more.error is not None
    assert one_more.error.code is ErrorCode.AMOUNT_INVALID

    now = harness.processor.status(payment_id="", reference=reference)
    assert now.captured == Money(3000, harness.currency)
    assert now.refunded == Money(3000, harness.currency)


def test_a_refund_of_a_payment_never_captured_is_refused(harness: Harness) -> None:
    reference = _held(harness, 5000)

    refund = harness.processor.refund(
        key=new_key(), reference=reference, amount=Money(100, harness.currency)
    )
    assert refund.outcome is Outcome.DECLINED
    assert harness.processor.status(payment_id="", reference=reference).state is PaymentState.HELD


def test_every_money_call_carries_the_gateway_key_to_the_processor(harness: Harness) -> None:
    keys = [new_key() for _ in range(4)]
    hold = harness.processor.hold(
        key=keys[0],
        payment_id=new_payment_id(),
        card=harness.approving(),
        amount=Money(5000, harness.currency),
    )
    harness.processor.capture(
        key=keys[1], reference=hold.reference, amount=Money(4000, harness.currency)
    )
    harness.processor.refund(
        key=keys[2], reference=hold.reference, amount=Money(100, harness.currency)
    )
    other = _held(harness)
    harness.processor.release(key=keys[3], reference=other, amount=Money(5000, harness.currency))

    sent = {
        ex.headers.get(harness.idempotency_header)
        for ex in harness.proxy.exchanges
        if ex.method == "POST"
    }
    assert set(keys) <= sent


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
        harness.unreachable.status(payment_id="x", reference="pi_or_psp_unknown")


def test_status_of_a_payment_the_processor_never_saw_is_not_found(harness: Harness) -> None:
    now = harness.processor.status(payment_id="", reference=_unknown_reference(harness))
    assert now.state is PaymentState.NOT_FOUND


def test_card_data_in_clear_never_reaches_a_web_processor(harness: Harness) -> None:
    if Capability.CARD_PRESENT in harness.processor.capabilities:
        pytest.fail("a web adapter claims the card-present path; this test needs a new branch")
    card = CardRef(
        kind="payment",
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
    assert result.outcome is Outcome.DECLINED
    assert result.error is not None and result.error.code is ErrorCode.UNSUPPORTED
    assert CLEAR_PAN not in repr(result)
    assert all(CLEAR_PAN.encode() not in ex.body for ex in harness.proxy.exchanges)


def _unknown_reference(h: Harness) -> str:
    return {"stripe": "pi_3NeverExisted0000000000"}.get(h.name, "NEVEREXISTED")


def test_no_secret_or_card_data_reaches_a_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The cards are made first, as the phone page would, outside what is logged here.
    card, other = harness.approving(), harness.approving()
    caplog.set_level(logging.DEBUG)
    amount = Money(5000, harness.currency)
    hold = harness.processor.hold(
        key=new_key(), payment_id=new_payment_id(), card=card, amount=amount
    )
    assert hold.succeeded
    harness.processor.capture(
        key=new_key(), reference=hold.reference, amount=Money(3000, harness.currency)
    )
    harness.processor.refund(
        key=new_key(), reference=hold.reference, amount=Money(100, harness.currency)
    )
    harness.unreachable.hold(key=new_key(), payment_id=new_payment_id(), card=other, amount=amount)
    assert caplog.records, "the SDKs log at DEBUG: this test must see their records"
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    for secret in harness.secrets:
        assert secret not in logged
