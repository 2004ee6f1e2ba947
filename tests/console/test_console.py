"""The serial console over a pseudo-terminal, driven like a technician's terminal emulator,
against a real daemon on the simulator with the embedded gateway."""

from __future__ import annotations

import re

import pexpect.fdpexpect

from terminal.console.console import ConsoleSettings
from tests.console.conftest import PIN, Bench, wait_for

PAN = "4761739001010010"  # the visa profile's test PAN (hardware/sim/cards/visa.card)


def run(child: pexpect.fdpexpect.fdspawn, line: str, *expected: str) -> str:
    """Send a line, wait for each expected text in order and the next prompt; return all."""
    child.send(line + "\r")
    seen = ""
    for text in expected:
        child.expect_exact(text)
        seen += child.before + child.after
    child.expect(r"KIOSK-0001[>#] ")
    return seen + child.before


def login(child: pexpect.fdpexpect.fdspawn, pin: str = PIN) -> str:
    child.send("login\r")
    child.expect_exact("PIN: ")
    return run(child, pin)


def reported(bench: Bench, kind: str) -> list[str]:
    """Event details queued for the gateway, of one kind."""
    return [
        row["body"]
        for row in bench.daemon.journal.outbox()
        if row["kind"] == "events" and f'"kind": "{kind}"' in row["body"]
    ]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_read_only_commands_are_open(bench: Bench) -> None:
    child = bench.open_console()
    out = run(child, "help", "uptime", "keys:")
    for name in (
        "status",
        "selftest",
        "relay test",
        "reader test",
        "meter",
        "queue",
        "sync now",
        "log [N]",
        "out-of-service on|off",
        "config",
        "reboot [force]",
        "login",
    ):
        assert name in out
    out = run(child, "status", "uptime")
    assert re.search(r"state\s+Idle \(screen idle\)", out)
    assert re.search(r"vehicle\s+pilot A", out)
    assert re.search(r"contactor\s+open \(commanded\), feedback", out)
    assert re.search(r"queue\s+\d+ unsent", out)
    assert "version" in out
    out = run(child, "selftest", "self-test: PASS")
    for device in ("contactor", "meter", "vehicle link", "reader", "journal", "gateway"):
        assert re.search(rf"{device}\s+pass", out)
    assert "register" in run(child, "meter", "Wh")
    assert "signed reading requested" in run(child, "meter signed", "session runs")
    assert "unsent" in run(child, "queue", "gateway")
    run(child, "config", "station.id = KIOSK-0001", "console.pin_file = <redacted>")
    assert "level=INFO" in run(child, "log 5", "logger=")
    assert "unknown command" in run(child, "frobnicate", "type help")
    assert "needs the technician PIN" in run(child, "relay test", "login first")
    assert "needs the technician PIN" in run(child, "reboot", "login first")
    assert bench.hardware.contactor.history.count("close") == 0


def test_privileged_commands_after_login_are_logged_and_reported(bench: Bench) -> None:
    child = bench.open_console()
    assert "wrong PIN (2 tries left)" in login(child, "000000")
    assert "technician logged in" in login(child)
    child.send("\r")
    child.expect_exact("KIOSK-0001# ")  # the prompt says a technician is logged in
    out = run(child, "relay test", "relay test: PASS")
    assert "close: feedback closed (ok); open: feedback open (ok)" in out
    assert bench.hardware.contactor.history[-2:] == ["close", "open"]
    assert not bench.hardware.contactor.commanded_closed

    child.send("reader test\r")
    child.expect_exact("present a card")
    bench.tap("visa")
    child.expect_exact("reader test: PASS")
    assert "payment card (Visa)" in child.before
    assert bench.daemon.journal.sessions() == []  # the test took the card: no session

    assert "out of service: on" in run(child, "out-of-service on", "on")
    wait_for(lambda: bench.daemon.status().out_of_service)
    assert "OUT OF SERVICE" in run(child, "status", "uptime")
    run(child, "out-of-service off", "out of service: off")
    wait_for(lambda: bench.daemon.status().phase == "Idle")
    assert "sending now" in run(child, "sync now", "unsent")
    run(child, "reboot", "contactor opens first")
    assert bench.restarts == ["restart"]
    run(child, "logout", "logged out")
    assert "needs the technician PIN" in run(child, "sync now", "login first")

    expected = (
        "login",
        "command=relay_test",
        "command=reader_test",
        "command=sync_now",
        "command=out_of_service value=on",
        "command=reboot",
        "logout reason=command",
    )
    # Reported in the order they happened, each when the uplink sends it: wait for the last.
    wait_for(lambda: "logout reason=command" in " ".join(reported(bench, "technician")))
    details = " ".join(reported(bench, "technician"))
    for detail in expected:
        assert detail in details
    assert "login_failed" in " ".join(reported(bench, "security"))
    assert "relay pass" in " ".join(reported(bench, "diagnostic"))


def test_lockout_after_repeated_wrong_pins_survives_a_new_console(bench: Bench) -> None:
    child = bench.open_console()
    login(child, "111111")
    login(child, "222222")
    assert "locked out for 15:00 min" in login(child, "333333")
    assert "locked out" in run(child, "login", "try again in")
    assert "technician logged in" not in run(child, "status", "uptime")
    again = bench.open_console()  # as after a reboot: the lock-out is on disk
    assert "locked out" in run(again, "login", "try again in")
    wait_for(lambda: len(reported(bench, "security")) >= 4)
    assert "lockout failures=3" in " ".join(reported(bench, "security"))


def test_idle_timeout_logs_the_technician_out(bench: Bench) -> None:
    child = bench.open_console()
    console = bench.consoles[-1][0].console
    console.settings = ConsoleSettings(idle_timeout_s=0.3)
    login(child)
    child.expect_exact("logged out: idle time-out", timeout=5)
    child.expect_exact("KIOSK-0001> ")
    assert not console.logged_in


def test_relay_test_is_refused_while_charging_and_no_card_data_reaches_the_console(
    bench: Bench,
) -> None:
    child = bench.open_console()
    login(child)
    bench.tap("visa")
    bench.hardware.vehicle.plug()
    bench.hardware.vehicle.charge()
    wait_for(lambda: bench.hardware.contactor.commanded_closed)
    closes = bench.hardware.contactor.history.count("close")
    out = run(child, "relay test", "relay test: FAIL")
    assert "relay test refused: a session is running (Charging)" in out
    assert bench.hardware.contactor.history.count("close") == closes
    assert "a session is running" in run(child, "reader test", "reader test: FAIL")
    assert "reboot refused" in run(child, "reboot", "force")
    out = run(child, "out-of-service on", "after the running session ends")
    run(child, "status", "uptime")
    bench.tap("visa")  # the same card stops the session
    wait_for(lambda: bench.daemon.status().phase == "Receipt")
    assert bench.daemon.status().out_of_service  # no new session starts after this one
    run(child, "out-of-service off", "out of service: off")
    bench.hardware.vehicle.unplug()
    wait_for(lambda: bench.daemon.status().pilot == "A")
    run(child, "status", "uptime")
    run(child, "log 500", "logger=")
    run(child, "config", "gateway.url")
    run(child, "queue", "gateway")
    run(child, "selftest", "self-test")

    [session] = bench.daemon.journal.sessions()
    assert session["card_last4"] == PAN[-4:]  # a real session with that card ran
    transcript = bench.transcript.getvalue()
    assert "Charging" in transcript and "visa" in transcript.lower()
    assert PAN not in transcript
    assert PAN[:6] + PAN[6:12] not in transcript
    for run_of_digits in re.findall(r"\d{13,19}", transcript):
        assert not _luhn_ok(run_of_digits), "a card number appeared on the console"


def test_a_technicians_current_limit_lowers_the_offer_at_once_and_off_lifts_it(
    bench: Bench,
) -> None:
    child = bench.open_console()
    assert "needs the technician PIN" in run(child, "current-limit 10", "login first")
    login(child)
    bench.tap("visa")
    bench.hardware.vehicle.plug()
    bench.hardware.vehicle.charge()
    wait_for(lambda: bench.hardware.contactor.commanded_closed)
    offered = bench.daemon.kiosk.rules.max_current_a
    assert bench.hardware.vehicle.offers[-1] == offered
    for bad in ("5", "81", "ten", "10 20", ""):  # nothing posted, the offer unchanged
        assert "usage: current-limit 6..80|off" in run(child, f"current-limit {bad}", "usage")
    assert bench.hardware.vehicle.offers[-1] == offered
    run(child, "current-limit 10", "current limit: 10 A")
    wait_for(lambda: bench.hardware.vehicle.offers[-1] == 10)  # while charging, at once
    assert bench.hardware.contactor.commanded_closed
    run(child, "current-limit off", "current limit: off")
    wait_for(lambda: bench.hardware.vehicle.offers[-1] == offered)
    assert "value=10" in " ".join(reported(bench, "technician"))
