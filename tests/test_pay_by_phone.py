"""Pay by phone, end to end on the simulator with the embedded gateway: the kiosk shows a
one-time code as a QR on its idle and declined screens; a phone pays it on the gateway's
page (the simulated processor's test cards), the kiosk starts with the hold as its cost
limit, the phone stops it, the capture is the priced energy and the phone's page shows it
with the receipt's link. A used or expired code cannot be paid; two phones on one code at
once: one pays, the other is never charged."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from gateway.pay.words import WORDS, choose
from launcher.simulate import Simulation
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees

Run = Callable[..., Simulation]


@pytest.fixture
def phone_config(config: Config) -> Config:
    return replace(config, payment=replace(config.payment, pay_by_phone=True))


@pytest.fixture
def pay(simulate: Run, phone_config: Config) -> Callable[[str], Simulation]:
    return lambda script: simulate(script, phone_config)


def qr(sim: Simulation) -> str:
    frame = sim.hardware.display.current
    assert frame is not None and frame.qr is not None and "/pay/" in frame.qr, frame
    return frame.qr


def authorizations(sim: Simulation) -> list[dict[str, object]]:
    return sim.gateway.ledger.all_authorizations()


def test_the_idle_screen_shows_a_one_time_code_and_the_page_the_price_before_start(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay("expect idle")
    url = qr(sim)
    frame = sim.hardware.display.current
    assert frame is not None and "Or scan to pay by phone" in frame.lines
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    # The station, the price lines exactly as the kiosk shows them, and the hold.
    assert sim.config.station.name in page.text
    for line in frame.lines[:-2]:
        assert line in page.text
    assert "50.00 EUR" in page.text
    assert 'lang="en"' in page.text


def test_the_page_speaks_the_phones_language_where_the_kiosk_offers_it(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay("expect idle")
    german = requests.get(qr(sim), headers={"Accept-Language": "de-DE,de;q=0.9"}, timeout=10)
    assert 'lang="de"' in german.text and "Bezahlen und laden" in german.text
    assert "0,39 EUR" in german.text  # the kiosk's German price line
    other = requests.get(qr(sim), headers={"Accept-Language": "ja, es;q=0.5"}, timeout=10)
    assert 'lang="en"' in other.text  # the station's language when the phone's is not offered


def test_paid_on_the_phone_charged_stopped_from_the_phone_and_captured(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay(
        """
        expect idle
        pay qr card
        expect plug-in
        plug
        ev charge
        expect charging
        wait 45m
        pay stop
        wait 10s
        expect receipt
        """
    )
    [result] = sim.results()
    assert result["ended"] == "remote"
    assert result["settlement"] == "captured"
    assert result["amount_captured"] == result["amount_priced"] > 0
    [row] = authorizations(sim)
    assert (row["card_kind"], row["status"]) == ("web_card", "captured")
    assert row["amount_captured"] == result["amount_captured"]
    # The phone's page shows the amount charged and links the receipt.
    page = requests.get(sim.phone.session_url or "", timeout=10)
    assert f"{result['amount_captured'] / 100:.2f} EUR" in page.text
    receipt_id = row["receipt_id"]
    assert f"/receipts/{receipt_id}" in page.text
    receipt = requests.get(f"{sim.gateway.url}/receipts/{receipt_id}", timeout=10)
    assert receipt.status_code == 200
    assert_ledger_agrees(sim)


def test_a_declined_payment_charges_nothing_and_the_code_can_be_paid_again(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay("expect idle")
    url = qr(sim)
    sim.run_lines("pay qr declined")
    assert "The payment was declined" in sim.phone.pages[-1]
    assert qr(sim) == url  # not spent
    assert [a["status"] for a in authorizations(sim)] == ["declined"]
    sim.run_lines("pay qr card\nexpect plug-in\nwait 3m\nexpect idle")
    assert_ledger_agrees(sim)  # the plug-in timeout released the paid hold


def test_a_used_code_is_refused_with_a_clear_page_and_charges_nothing(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay("expect idle")
    used = qr(sim)
    sim.run_lines("pay qr card\nexpect plug-in")
    page = requests.get(used, timeout=10)
    assert page.status_code == 410 and "This code cannot be used" in page.text
    again = requests.post(used, data={"method": "web_card", "test_card": "4242"}, timeout=10)
    assert "This code cannot be used" in again.text
    assert len(authorizations(sim)) == 1
    sim.run_lines("wait 3m\nexpect idle")
    assert qr(sim) != used  # the kiosk shows a new code
    assert_ledger_agrees(sim)


def test_an_expired_code_is_refused(pay: Callable[[str], Simulation]) -> None:
    sim = pay("expect idle")
    url = qr(sim)
    late = sim.gateway.ledger.clock() + timedelta(minutes=16)
    sim.gateway.ledger.clock = lambda: late
    page = requests.get(url, timeout=10)
    assert page.status_code == 410 and "This code cannot be used" in page.text
    assert authorizations(sim) == []


def test_two_phones_paying_one_code_at_once_one_pays_the_other_is_never_charged(
    pay: Callable[[str], Simulation],
) -> None:
    sim = pay("expect idle")
    url = qr(sim)
    start = threading.Barrier(2)
    answers: list[requests.Response] = []

    def phone() -> None:
        start.wait()
        answers.append(
            requests.post(url, data={"method": "web_card", "test_card": "4242"}, timeout=30)
        )

    threads = [threading.Thread(target=phone) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    paid = [a for a in answers if "/pay/sessions/" in a.url]
    refused = [a for a in answers if "This code cannot be used" in a.text]
    assert (len(paid), len(refused)) == (1, 1)
    assert len(authorizations(sim)) == 1  # the loser never reached the processor
    sim.run_lines("wait 1s\nexpect plug-in\nplug\nev charge\nwait 10m\nunplug\nwait 10s")
    [result] = sim.results()
    assert result["settlement"] == "captured"
    assert_ledger_agrees(sim)


def test_the_declined_screen_offers_the_code_too(pay: Callable[[str], Simulation]) -> None:
    sim = pay("expect idle\ntap declined\nexpect declined")
    assert "/pay/" in qr(sim)
    frame = sim.hardware.display.current
    assert frame is not None and "Or scan to pay by phone" in frame.lines


def test_without_pay_by_phone_no_code_is_shown(simulate: Run) -> None:
    sim = simulate("expect idle")
    frame = sim.hardware.display.current
    assert frame is not None and frame.qr is None


def test_the_page_has_every_word_in_every_language() -> None:
    keys = set(WORDS["en"])
    assert all(set(words) == keys and all(words.values()) for words in WORDS.values())


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("de-CH, fr;q=0.8, en;q=0.5", "de"),
        ("fr;q=0.4, nl;q=0.9", "nl"),
        ("es, *;q=0.1", "en"),
        ("de;q=0, fr", "fr"),
        ("", "en"),
        ("de;q=x, nl", "nl"),
    ],
)
def test_the_phones_language_is_its_best_one_the_kiosk_offers(header: str, language: str) -> None:
    assert choose(header, ["en", "de", "fr", "nl"], "en") == language


def test_a_code_typed_in_on_the_short_address_opens_its_page(
    pay: Callable[[str], Simulation],
) -> None:
    """A kiosk with a character LCD shows `HOST/pay` and the code instead of the QR code."""
    sim = pay("expect idle")
    url = qr(sim)
    short, code = url.rsplit("/", 1)
    form = requests.get(short, headers={"Accept-Language": "de"}, timeout=10)
    assert form.status_code == 200 and 'name="code"' in form.text and 'lang="de"' in form.text
    typed = requests.get(short, params={"code": f" {code} "}, timeout=10)
    assert typed.url == url and "50.00 EUR" in typed.text
    wrong = requests.get(short, params={"code": "no such!"}, timeout=10)
    assert wrong.status_code == 400 and "That is not a code" in wrong.text


def test_the_qr_code_encodes_the_gateways_public_address(
    phone_config: Config, tmp_path: Path
) -> None:
    """Behind a proxy the gateway's own address is not the phones': `--public-url` is."""
    sim = Simulation(
        config=phone_config, data_dir=tmp_path / "kiosk", public_url="https://ev.example.org/gw/"
    )
    try:
        sim.run_lines("expect idle")
        url = qr(sim)
        assert url.startswith("https://ev.example.org/gw/pay/")
        code = url.rsplit("/", 1)[1]
        assert requests.get(f"{sim.gateway.url}/pay/{code}", timeout=10).status_code == 200
    finally:
        sim.close()
