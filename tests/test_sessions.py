"""Whole sessions on the simulator with the embedded gateway, driven by scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from hardware.sim.card_script import parse_profile
from launcher.simulate import Simulation, parse_script
from terminal.errors import ScriptError
from tests.ledger_check import assert_ledger_agrees

Run = Callable[[str], Simulation]

CHARGE_45M = """
expect idle
tap {card}
expect plug-in
plug
ev charge
expect charging
wait 45m
tap {card}
expect receipt
unplug
wait 2m
expect idle
"""

# 11 kW for 45 min = 8.25 kWh at the 0.39 EUR/kWh shown (0.3277 excl. + 19 % VAT, billing
# rule 1): 3.2175, billed 3.22 EUR.
EXPECTED_45M = {"energy_wh": 8250, "amount_captured": 322, "currency": "EUR"}


@pytest.mark.parametrize(
    ("card", "brand", "last4"),
    [
        ("visa", "Visa", "0010"),
        ("mastercard", "Mastercard", "0004"),
        ("wallet", "Visa", None),
        ("girocard", "girocard", None),
        ("rfid", "RFID", ""),
    ],
)
def test_happy_path_captures_exactly_the_energy_delivered(
    simulate: Run, card: str, brand: str, last4: str | None
) -> None:
    sim = simulate(CHARGE_45M.format(card=card))
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert result["ended"] == "card"
    assert result["card_brand"] == brand
    if last4 is not None:
        assert result["card_last4"] == last4
    assert {k: result[k] for k in EXPECTED_45M} == EXPECTED_45M
    assert sim.hardware.contactor.history[-1] == "open"
    assert_ledger_agrees(sim)


def test_declined_card_shows_declined_and_holds_nothing(simulate: Run) -> None:
    sim = simulate("tap declined\nexpect declined\nwait 10s\nexpect idle\n")
    [result] = sim.results()
    assert result["settlement"] == "declined"
    assert sim.hardware.contactor.history.count("close") == 0
    assert sim.gateway.ledger.all_movements() == []
    assert_ledger_agrees(sim)


@pytest.mark.slow
def test_partial_approval_lowers_the_cap_and_charging_stops_at_it(simulate: Run) -> None:
    # The test card approves half of the 50.00 EUR hold; 10 h at 11 kW would cost 42.90 EUR.
    sim = simulate("tap partial\nexpect plug-in\nplug\nev charge\nwait 10h\n")
    [result] = sim.results()
    assert result["ended"] == "cost_cap"
    assert result["settlement"] == "captured"
    assert result["amount_captured"] <= 2500
    # Stopped within one meter sample of the cap: one more second of 11 kW costs < 0.01 EUR.
    assert result["amount_captured"] >= 2500 - 1
    ledger = sim.gateway.ledger.all_authorizations()
    assert ledger[0]["amount_authorized"] == 2500
    assert_ledger_agrees(sim)


def test_processor_timeout_tells_the_driver_and_voids(simulate: Run) -> None:
    sim = simulate("tap timeout\nexpect no-answer\nwait 1h\nexpect idle\n")
    [result] = sim.results()
    assert result["settlement"] == "voided"
    assert result["acknowledged"]
    assert sim.gateway.ledger.all_movements() == []
    assert_ledger_agrees(sim)


def test_plug_in_timeout_voids_the_hold(simulate: Run) -> None:
    sim = simulate("tap visa\nexpect plug-in\nwait 3m\nexpect idle\n")
    [result] = sim.results()
    assert result["settlement"] == "voided"
    assert result["ended"] == "plug_in_timeout"
    kinds = [m["kind"] for m in sim.gateway.ledger.all_movements()]
    assert kinds == ["hold", "release"]
    assert_ledger_agrees(sim)


def test_another_card_cannot_stop_someone_elses_session(simulate: Run) -> None:
    sim = simulate(
        "tap visa\nplug\nev charge\nwait 10m\ntap mastercard\nexpect in-use\n"
        "wait 10s\nexpect charging\nwait 10m\ntap visa\nexpect receipt\n"
    )
    [result] = sim.results()
    assert result["ended"] == "card"
    assert result["card_last4"] == "0010"
    assert result["energy_wh"] == 11_000 * (20 * 60 + 10) // 3600  # 20 min 10 s at 11 kW
    assert_ledger_agrees(sim)


def test_unplugging_mid_charge_ends_and_settles_the_session(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 30m\nunplug\nexpect receipt\n")
    [result] = sim.results()
    assert result["ended"] == "unplugged"
    assert result["energy_wh"] == 5500
    assert_ledger_agrees(sim)


def test_vehicle_pause_opens_the_contactor_and_resume_closes_it(simulate: Run) -> None:
    sim = simulate(
        "tap visa\nplug\nev charge\nwait 10m\nev pause\nexpect suspended\nwait 10m\n"
        "ev charge\nexpect charging\nwait 10m\nev done\nwait 30m\nexpect receipt\n"
    )
    [result] = sim.results()
    assert result["ended"] == "suspended_timeout"
    assert result["energy_wh"] == 11_000 * 20 // 60  # no energy while paused
    assert sim.hardware.contactor.history.count("close") == 2
    assert_ledger_agrees(sim)


def test_fault_mid_charge_opens_the_contactor_and_settles_what_was_delivered(
    simulate: Run,
) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 20m\nfault rcd\nexpect receipt\nwait 2m\n")
    assert not sim.hardware.plant.conducting
    [result] = sim.results()
    assert result["ended"] == "fault"
    assert result["energy_wh"] == 11_000 * 20 // 60
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    # While the fault is active no session starts; clearing it brings the kiosk back.
    sim.run_step(parse_script("tap mastercard", {"mastercard"})[0])
    assert len(sim.results()) == 1
    sim.run_step(parse_script("clear rcd", set())[0])
    assert sim.hardware.display.current.name == "idle"
    assert_ledger_agrees(sim)


def test_welded_contactor_puts_the_kiosk_out_of_service(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 5m\nfault contactor_welded\nwait 1m\n")
    [result] = sim.results()
    assert result["ended"] == "fault"
    assert "contactor_welded" in sim.daemon.kiosk.faults
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "out-of-order"
    assert_ledger_agrees(sim)


def test_restart_mid_charge_settles_the_session_exactly_once(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 30m\nrestart\nwait 1m\nrestart\nwait 1m\n")
    [result] = sim.results()
    assert result["ended"] == "restart"
    assert result["settlement"] == "captured"
    # The final reading after the restart is the meter register: all 30 minutes are billed.
    assert result["energy_wh"] == 5500
    captures = [m for m in sim.gateway.ledger.all_movements() if m["kind"] == "capture"]
    assert len(captures) == 1
    assert_ledger_agrees(sim)


def test_gateway_down_at_tap_tells_the_driver_and_charges_nothing(simulate: Run) -> None:
    sim = simulate("gateway down\ntap visa\nexpect no-answer\ngateway up\nwait 10m\nexpect idle\n")
    [result] = sim.results()
    assert result["settlement"] == "voided"
    assert sim.hardware.contactor.history.count("close") == 0
    assert_ledger_agrees(sim)


def test_capture_queued_while_the_gateway_is_down_is_sent_when_it_returns(simulate: Run) -> None:
    sim = simulate(
        "tap visa\nplug\nev charge\nwait 15m\ngateway down\nwait 15m\ntap visa\n"
        "expect receipt\nwait 3h\ngateway up\nwait 10m\n"
    )
    [result] = sim.results()
    assert result["energy_wh"] == 5500
    assert result["acknowledged"]
    assert_ledger_agrees(sim)


def test_out_of_service_waits_for_the_running_session(simulate: Run) -> None:
    sim = simulate(
        "tap visa\nplug\nev charge\nwait 5m\nout-of-service on\nexpect charging\n"
        "tap visa\nwait 2m\nexpect out-of-order\n"
    )
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert_ledger_agrees(sim)


def test_a_card_tapped_while_the_reader_is_down_starts_a_session_once_it_is_back(
    simulate: Run,
) -> None:
    """The reader fault is the only thing keeping the kiosk out of service: the card waiting
    on the reader is read as a tap once the reader answers (the fault's clearing and the card
    reach the daemon in one round, the clearing first)."""
    sim = simulate(
        "expect idle\nfault reader\nexpect out-of-order\ntap visa\nexpect out-of-order\n"
        "clear reader\nexpect plug-in\n"
    )
    (session,) = sim.daemon.journal.sessions()
    assert (session["card_brand"], session["status"]) == ("Visa", "authorized")


def test_a_card_read_while_another_fault_stands_is_refused_and_not_taken_later(
    simulate: Run,
) -> None:
    """Out of service for longer than the reader's fault (the meter's here): the card is read
    once the reader is back and refused; it starts nothing when the kiosk comes back into
    service, only when tapped again."""
    sim = simulate(
        "fault reader\nfault meter\ntap visa\nclear reader\nexpect out-of-order\n"
        "clear meter\nexpect idle\n"
    )
    assert sim.daemon.journal.sessions() == []
    sim.run_lines("remove\ntap visa\nexpect plug-in\n")
    assert len(sim.daemon.journal.sessions()) == 1


def test_a_read_the_reader_breaks_off_is_a_reader_fault_and_the_kiosk_comes_back(
    simulate: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader fails in the middle of a card's read (the scripted card's "mute": no answer
    within the reader's time): an expected device error, reported as the reader's fault (no
    traceback), and cleared as soon as the reader answers a poll again."""
    sim = simulate("expect idle\n")
    mute = parse_profile("name: mute\nkind: iso-dep\nuid: 08A1B2C3\nsend:\nresp: mute\n")
    sim.hardware.reader.present(mute.card())
    sim.settle()
    assert sim.hardware.display.current is not None
    assert sim.hardware.display.current.name == "idle"
    assert sim.daemon.journal.sessions() == []
    outbox = sim.daemon.journal.outbox()
    events = [json.loads(row["body"])["event"] for row in outbox if row["kind"] == "events"]
    assert [(e["kind"], e["detail"]) for e in events if e["detail"] == "reader"] == [
        ("fault", "reader"),
        ("fault_cleared", "reader"),
    ]
    assert "event=reader_fault" in caplog.text
    assert "Traceback" not in caplog.text
    sim.run_lines("tap visa\nexpect plug-in\n")


def test_unreadable_card_asks_to_tap_again(simulate: Run) -> None:
    sim = simulate("tap tearing\nexpect tap-again\nwait 10s\nexpect idle\n")
    assert sim.results() == []


def test_a_bad_script_line_is_an_error_naming_the_line() -> None:
    with pytest.raises(ScriptError, match="line 2"):
        parse_script("plug\ntap nosuchcard\n", {"visa"})
    with pytest.raises(ScriptError, match="line 1"):
        parse_script("wait forever\n", {"visa"})


def test_idle_screen_shows_the_price_including_vat(simulate: Run) -> None:
    sim = simulate("expect idle\n")
    frame = sim.hardware.display.current
    assert frame is not None
    assert any("0.39 EUR per kWh" in line for line in frame.lines)
    assert any("19% VAT" in line for line in frame.lines)
    assert Decimal("0.3277") * Decimal("1.19") == Decimal("0.389963")
