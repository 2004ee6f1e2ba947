"""Crash safety of the gateway: the gateway process SIGKILLed at random moments, at least 100
times, while kiosk processes run sessions against it and retry.

The kiosks (`launcher.sim_kiosk`, never killed here) run one driver's visit after another,
some paid by tapping a card, some on a phone through the kiosk's QR code (pay by phone: the
phone's page, its hold, the start command, the phone's stop button — each may be cut by a
kill); a killer SIGKILLs the gateway at random moments — inside a hold, a capture, a void, a
phone's payment, between them — and starts it again on the same database. At the end every
kiosk drains its outbox and three books must agree: the kiosks' journals (with the commands
they took), the gateway's ledger (with its commands), and the simulated processor's own books.
Every processor hold captured or released exactly once, no processor hold without a ledger
row, every web hold sent to its kiosk once and its start answered, every capture equal to the
priced energy the hardware delivered.

Replay a run with `EV_CRASH_SEED=<seed>`; `EV_GATEWAY_KILLS` sets how many kills (default 100).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardware.sim.stored import register_log
from launcher.sim_kiosk import HARDWARE_DIR
from terminal.config import load
from terminal.money import Money
from terminal.protection.keys import provision_fleet
from terminal.station import build_tariff
from tests.crash.processes import STEP_TIMEOUT_S, GatewayProcess, KioskProcess, kiosk_config
from tests.crash.test_sigkill import (
    closings_per_authorization,
    delivered_per_authorization,
    failure_context,
    owning_holds,
    session_steps,
)
from tests.ledger_check import (
    assert_processor_agrees,
    assert_records_agree,
    assert_rollup_agrees,
    assert_web_payments_agree,
)

# 100 gateway restarts: a few minutes on a quiet 2-core machine; 19 minutes at load average 15.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

KIOSKS = 3
UP_S = (0.1, 1.0)  # how long the gateway lives between kills
MIN_CAPTURED = 30  # the run must settle real sessions, not only refused ones
QUIET_S = 180.0  # after the last kill, for every paid start to reach its kiosk and be answered
# What a phone says when the gateway died under it: no code on the kiosk's screen (it could
# not get one), no connection, the answer cut off, or the page after a restart (the code
# already being paid by the request the kill cut short).
PHONE_TROUBLE = (
    "no pay-by-phone QR on screen",
    "Connection",
    "RemoteDisconnected",
    "Max retries",
    "timed out",
    "answered",
    "was not taken",
    "no session was paid",
)


def phone(kiosk: KioskProcess, step: str) -> str:
    """A phone's step (`pay qr card`, `pay stop`): "ok", or what cut it off. A phone the
    gateway's death cut off is a driver who walks away; anything else is an error."""
    kiosk.write(step)
    line = kiosk.lines.get(timeout=STEP_TIMEOUT_S)
    if line == "ok":
        return line
    assert line is not None and line.startswith("error"), line
    troubles = [trouble for trouble in PHONE_TROUBLE if trouble in line]
    assert troubles, line
    return troubles[0]


def test_gateway_sigkilled_100_times_settles_every_hold_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("EV_CRASH_SEED", time.time_ns() % 10**9))
    kills_wanted = int(os.environ.get("EV_GATEWAY_KILLS", "100"))
    print(f"gateway crash seed {seed} (replay: EV_CRASH_SEED={seed})")  # noqa: T201
    names = [f"G{n}" for n in range(1, KIOSKS + 1)]
    provision_fleet(tmp_path / "keys", fleet_id="gw-crash", devices=names)
    # A short step lock: a step the killed process left behind is resumed after 1 s.
    gateway = GatewayProcess(tmp_path, tmp_path / "keys" / "gateway", extra=["--step-lock", "1"])
    kiosks = [
        KioskProcess(
            config=kiosk_config(tmp_path, name, pay_by_phone=True),
            data=tmp_path / name,
            gateway_url=gateway.url,
            key_dir=tmp_path / "keys" / "devices" / name,
            id_prefix=name.lower(),
        )
        for name in names
    ]
    done = threading.Event()
    up = threading.Event()  # a session starts while the gateway is up (it may die in it)
    up.set()
    quiet = threading.Event()  # the gateway has handed out and heard back every command
    errors: list[BaseException] = []
    sessions = Counter[str]()
    phones = Counter[str]()

    def drive(kiosk: KioskProcess, rng: random.Random) -> None:
        try:
            kiosk.start()
            while not done.is_set():
                up.wait(timeout=30)
                sessions[kiosk.data.name] += 1
                paid = True
                for planned in session_steps(rng, phone=True):
                    if planned.startswith("pay qr"):
                        said = phone(kiosk, planned)
                        paid = said == "ok"
                        phones["paid" if paid else f"pay: {said}"] += 1
                    elif planned == "pay stop" and paid and phone(kiosk, planned) == "ok":
                        phones["stopped"] += 1
                    else:
                        # A phone that did not pay, or whose stop did not reach the gateway:
                        # the driver unplugs (a start that got through after all is stopped
                        # and settled like any session).
                        kiosk.step("unplug" if planned == "pay stop" else planned)
            # Starts paid before a kill may reach the kiosk only now: keep the kiosk's time
            # going until the gateway has heard back about every one, then drain.
            kiosk.step("unplug")
            while not quiet.is_set():
                kiosk.step("wait 1m")
                kiosk.step("unplug")
                time.sleep(0.2)
            for step in ("unplug", "wait 31m", "wait 10m", "wait 10m", "wait 10m"):
                kiosk.step(step)
            kiosk.stop()
        except BaseException as exc:
            errors.append(exc)
            if kiosk.proc is not None:
                kiosk.kill()

    rng = random.Random(seed)
    kills = 0
    threads = [
        threading.Thread(target=drive, args=(k, random.Random(f"{seed}:{k.data.name}")))
        for k in kiosks
    ]
    try:
        for thread in threads:
            thread.start()
        while kills < kills_wanted and not errors:
            time.sleep(rng.uniform(*UP_S))
            up.clear()
            gateway.kill()
            kills += 1
            gateway.start()
            up.set()
        done.set()
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline and not errors:
            if gateway.settled():
                time.sleep(3)  # a job's round (2 s) may still write a start
                if gateway.settled():
                    break
            time.sleep(1)
        quiet.set()
        for thread in threads:
            thread.join(timeout=240)
        authorizations = gateway.rows("authorizations")
        moves = gateway.rows("movements")
        payments = gateway.rows("sim_payments")
        commands = gateway.rows("kiosk_commands")
    finally:
        done.set()
        quiet.set()
        gateway.stop()
    assert not errors, f"seed {seed}: {errors[0]!r}"
    print(  # noqa: T201
        f"seed {seed}: {kills} gateway kills, sessions {dict(sessions)}, "
        f"{len(authorizations)} authorizations, {len(payments)} processor payments, "
        f"{dict(Counter((a['status'], a['decline_reason']) for a in authorizations))}"
    )
    assert kills >= kills_wanted
    assert len([a for a in authorizations if a["status"] == "captured"]) >= min(
        MIN_CAPTURED, kills_wanted
    )

    # The journals and the ledger agree; nothing is left open or half-done.
    journal = [row for k in kiosks for row in k.journal_rows("sessions")]
    assert_records_agree(journal, authorizations, moves)
    # Every web hold was sent to its kiosk once and answered; a start is a session in the
    # kiosk's journal or a released hold.
    web = assert_web_payments_agree(
        journal,
        authorizations,
        moves,
        commands=commands,
        kiosk_commands=[row for k in kiosks for row in k.journal_rows("commands")],
    )
    print(f"seed {seed}: {web} sessions paid on a phone, phones {dict(phones)}")  # noqa: T201
    assert web > 0
    assert_rollup_agrees(gateway.db_url)  # the revenue rollup survived every kill
    assert not [a for a in authorizations if a["status"] in ("approved", "pending")]
    for kiosk in kiosks:
        unsent = [r for r in kiosk.journal_rows("outbox") if r["state"] == "pending"]
        assert unsent == [], f"seed {seed}: {unsent[:3]}"
    # The processor's books agree with the ledger: each hold captured or released once.
    assert_processor_agrees(authorizations, payments)
    assert {p["payment_id"] for p in payments} == {
        a["id"] for a in authorizations if a["processor_ref"] is not None
    }

    # Every capture is the priced energy the hardware delivered.
    tariff = build_tariff(load(kiosk_config(tmp_path, names[0])))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for kiosk in kiosks:
        mine = [a for a in authorizations if a["terminal_id"] == kiosk.data.name]
        log = register_log(kiosk.data / HARDWARE_DIR)
        delivered = delivered_per_authorization(log, owning_holds(mine, commands))
        closings = closings_per_authorization(log, owning_holds(mine, commands))
        for auth in mine:
            energy = delivered.get(auth["id"], 0)
            context = f"seed {seed}: {auth['id']} delivered {energy} Wh, " + failure_context(
                kiosk, auth, commands, closings
            )
            if energy == 0:
                assert auth["status"] in ("voided", "declined", "failed"), context
                continue
            price = tariff.begin(start).advance(
                at=start, energy_wh=energy, power_w=0, current_ma=0, charging=True
            )
            assert auth["status"] == "captured", context
            assert Money(auth["amount_captured"], auth["currency"]) == price.total(), context
