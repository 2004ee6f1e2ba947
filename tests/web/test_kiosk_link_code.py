"""Linking a card by a tap at the kiosk, end to end on both back-ends: a simulated kiosk (the
real daemon, executor and sender) charges against the gateway; its receipt screen then shows
a one-time link code the gateway issued for the tapped card (read here from the frame the
simulated display recorded); the driver, signed in on the portal, types it and the session
is in their history. The code is on the screen only: not in any file the kiosk or the
gateway wrote, not in a log line; the session's token is what the gateway links."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hardware.ports import Frame
from launcher.simulate import Simulation, run_script
from terminal.config import Config
from tests.web.console_app import console_app
from tests.web.mail_sink import mail_sink
from tests.web.test_portal import signed_in_driver
from tests.web.test_portal_link_codes import cards_of, link_by_code


def _session(card: str) -> str:
    return f"""
expect idle
tap {card}
expect plug-in
plug
ev charge
expect charging
wait 20m
tap {card}
expect receipt
wait 2s
"""


def _code_on_screen(sim: Simulation) -> tuple[Frame, str]:
    """The receipt frame showing a link code, and the code as typed (groups joined)."""
    shown = [f for f in sim.hardware.display.frames if f.name == "receipt" and f.code]
    assert shown, "no receipt frame with a link code"
    frame = shown[-1]
    assert frame.code is not None
    return frame, frame.code[1].replace("-", "")


def _files_hold(root: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("card", ["visa", "rfid"])
def test_the_code_on_the_kiosks_receipt_links_the_card_on_the_portal(
    config: Config,
    tmp_path: Path,
    db_url: str,
    card: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = run_script(config, _session(card), tmp_path / "sim", gateway_db=db_url)
    try:
        frame, code = _code_on_screen(sim)
        ended_at = sim.clock.now()
    finally:
        sim.close()
    # Shown with its hint, in the station's language and in each of its others.
    assert frame.code is not None
    assert f"Link code: {frame.code[1]}" in frame.lines
    assert any("enter the link code" in line for line in frame.lines)
    assert len(frame.variants) == 3
    assert all(v.code is not None and v.code[1] == frame.code[1] for v in frame.variants)
    # The screen is the only place the code went.
    assert _files_hold(tmp_path, code) == []
    assert code not in caplog.text
    assert frame.code[1] not in caplog.text

    with mail_sink() as (sink, mailer):
        app = console_app(db_url, mailer=mailer)
        app.clock.now = ended_at
        dana = signed_in_driver(app, sink, "dana@example.org")
        assert link_by_code(dana, code.lower()).status_code == 303
        assert ("RFID token" if card == "rfid" else "Payment card") in cards_of(dana)
        history = dana.get("/account").text
        assert history.count('data-session="') == 1
        assert link_by_code(dana, code).status_code == 400  # used once
