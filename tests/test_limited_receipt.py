"""A power jump between two meter samples near the cap, end to end on the simulator: the
contactor opens one sample late, the cost has passed the hold, and the capture is the hold.
The receipt totals exactly what was captured, on the kiosk's screen and on the gateway's
receipt page, with a line "Limited to the authorized amount" carrying its VAT."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import requests

from hardware.sim.card_script import load_profiles
from launcher.simulate import Simulation, parse_script
from terminal.config import Config
from terminal.core.kiosk import Charging
from terminal.core.screens import Receipt, frame_for
from tests.ledger_check import assert_ledger_agrees

HOLD = 300  # 3.00 EUR: 7.7 kWh at the 0.39 EUR/kWh of the example config


def steps(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(load_profiles())):
        sim.run_step(step)


def test_power_jump_past_the_cap_is_limited_on_screen_and_on_the_receipt_page(
    config: Config, tmp_path: Path
) -> None:
    cfg = replace(
        config,
        payment=replace(config.payment, hold=HOLD, min_authorized=100, increment=0, ceiling=0),
    )
    sim = Simulation(config=cfg, data_dir=tmp_path / "sim")
    try:
        steps(sim, "expect idle\ntap visa\nplug\nwait 1m\nev charge\nexpect charging\n")
        # Charge at the car's 11 kW until the next sample could reach the cap ...
        while True:
            phase = sim.daemon.kiosk.phase
            assert isinstance(phase, Charging) and phase.session.meterage is not None
            if phase.session.meterage.total().minor >= HOLD - 2:
                break
            sim.advance(5_000)
        # ... then the draw jumps to 1 MW for one sample: 0.28 kWh, 0.11 EUR past the cap.
        sim.hardware.plant.demand_w = 1_000_000
        steps(sim, "wait 10s\nexpect receipt\n")
        screen = sim.daemon.executor.screen
        assert isinstance(screen, Receipt) and screen.bill is not None
        [result] = sim.results()
        assert result["amount_captured"] == HOLD
        assert screen.total.minor == HOLD == screen.bill.total.minor
        [limit] = [line for line in screen.bill.lines if line.dimension == "LIMIT"]
        assert limit.incl_vat.minor < 0
        # The kiosk's screen: the lines incl. VAT add up to the total shown.
        fields = frame_for(screen).fields
        assert fields[-1] == ("Total", "3.00 EUR")
        amounts = [
            Decimal(value.removesuffix(" EUR"))
            for _, value in fields[2 : 2 + len(screen.bill.lines)]
        ]
        assert sum(amounts) == Decimal("3.00")
        assert ("Limited to the authorized amount", str(limit.incl_vat)) in fields
        # The gateway's receipt: the lines incl. and excl. VAT and the VAT add up to the
        # capture, and its page shows the rows the kiosk's screen shows, the total last.
        base = sim.gateway.url
        stored = requests.get(f"{base}/v1/receipts/{screen.receipt_id}", timeout=10).json()
        assert stored["total"] == HOLD
        assert sum(line["incl_vat"] for line in stored["lines"]) == HOLD
        assert sum(line["excl_vat"] for line in stored["lines"]) == stored["total_excl_vat"]
        assert stored["total_excl_vat"] + sum(v["vat"] for v in stored["vat"]) == HOLD
        page = requests.get(f"{base}/receipts/{screen.receipt_id}", timeout=10).text
        rows = [
            (html.unescape(label), html.unescape(value))
            for label, value in re.findall(
                r'<dt class="label">(.*?)</dt><dd class="value[^"]*"[^>]*>(.*?)</dd>',
                page.split('id="bill"', 1)[1].split("</section>", 1)[0],  # the bill only
            )
        ]
        assert rows == list(fields)
        assert rows[-1] == ("Total", "3.00 EUR")
        steps(sim, "unplug\nwait 2m\nexpect idle\n")
        assert_ledger_agrees(sim)
    finally:
        sim.close()
