"""The receipt's link code in the machine: a session paid by a tapped card or RFID token asks
for one when its receipt shows, after the capture is queued; the code shows on that receipt
only (late, for another session, or after the receipt is gone, it is dropped); a web payment
has no card to link and asks for none."""

from __future__ import annotations

from hardware.ports import PilotState
from terminal.core import screens
from terminal.core.actions import Capture, RequestLinkCode, ShowScreen
from terminal.core.events import LinkCodeIssued, StopRequested, Timer
from terminal.core.kiosk import Idle, Receipt
from terminal.core.machine import step
from terminal.core.session import Card, CardKind
from tests.core.test_scenarios import VISA, Walk, of, settlements, shown
from tests.core.test_web_payment import paid

RFID = Card(kind=CardKind.ID_TOKEN, token="tok-rfid-00000001", brand="RFID", last4="")


def _to_receipt(walk: Walk, card: Card) -> tuple[str, list[object]]:
    walk.charging(card)
    walk.sample(2_000)
    walk.stop_by_card(card)
    actions = walk.sample(10)
    assert isinstance(walk.kiosk.phase, Receipt)
    return walk.kiosk.phase.session.session_id, list(actions)


def test_a_tapped_cards_receipt_asks_for_a_code_after_queueing_the_capture() -> None:
    for card in (VISA, RFID):
        walk = Walk()
        session_id, actions = _to_receipt(walk, card)
        (ask,) = [a for a in actions if isinstance(a, RequestLinkCode)]
        assert ask.session_id == session_id
        assert actions.index(ask) > actions.index(settlements(tuple(actions))[0])  # type: ignore[arg-type]
        assert not [a for a in actions if isinstance(a, Capture) and a.session_id != session_id]


def test_the_code_shows_on_its_own_receipt_only() -> None:
    walk = Walk()
    session_id, _actions = _to_receipt(walk, VISA)
    before = walk.kiosk.phase
    assert isinstance(before, Receipt) and before.shown is not None
    other = walk.event(LinkCodeIssued, session_id="session-9999", code="ABCD2345", valid_ms=300_000)
    assert other == ()
    assert walk.kiosk.phase == before
    actions = walk.event(LinkCodeIssued, session_id=session_id, code="ABCD2345", valid_ms=300_000)
    (receipt,) = shown(actions)
    assert isinstance(receipt, screens.Receipt)
    assert receipt.link_code == "ABCD2345"
    assert receipt == screens.Receipt(**{**_fields(before.shown), "link_code": "ABCD2345"})
    assert "ABCD2345" not in repr(receipt)  # a secret while valid: not in a repr
    assert "ABCD2345" not in repr(
        LinkCodeIssued(
            session_id=session_id, code="ABCD2345", valid_ms=1, at_ms=0, at=walk.stamp(0)["at"]
        )
    )
    frame = screens.frame_for(receipt)
    assert frame.code == ("Link code", "ABCD-2345")
    assert "Link code: ABCD-2345" in frame.lines
    assert all("ABCD" not in value for _label, value in frame.fields)  # the page's rows
    # The receipt's time runs out: idle, and a late code is dropped.
    walk.timer(Timer.RECEIPT, after_ms=60_000)
    assert isinstance(walk.kiosk.phase, Idle)
    assert walk.event(LinkCodeIssued, session_id=session_id, code="ZZZZ2345", valid_ms=1) == ()


def test_a_receipt_without_a_code_shows_no_code_line() -> None:
    walk = Walk()
    _session_id, actions = _to_receipt(walk, VISA)
    receipt = [s for s in shown(tuple(actions)) if isinstance(s, screens.Receipt)][-1]  # type: ignore[arg-type]
    frame = screens.frame_for(receipt)
    assert frame.code is None
    assert all("link code" not in line for line in frame.lines)


def _fields(receipt: screens.Receipt) -> dict[str, object]:
    return {name: getattr(receipt, name) for name in receipt.__dataclass_fields__}


def test_every_phase_handles_a_link_code_without_failing() -> None:
    walk = Walk()
    walk.boot()
    kiosk, actions = step(
        walk.kiosk,
        LinkCodeIssued(session_id="x", code="ABCD2345", valid_ms=1, **walk.stamp(10)),
    )
    assert kiosk == walk.kiosk
    assert actions == ()
    assert of(ShowScreen, actions) == []


def test_a_web_payments_receipt_asks_for_no_code() -> None:
    walk = Walk()
    walk.boot()
    walk.pilot(PilotState.B)
    walk.pilot(PilotState.C)
    paid(walk)
    walk.sample(1_000)
    walk.event(StopRequested, session_id="web-session-0001")
    actions = walk.pilot(PilotState.B) + walk.sample(0)
    assert isinstance(walk.kiosk.phase, Receipt)
    assert of(Capture, actions)
    assert of(RequestLinkCode, actions) == []
