"""No card data anywhere: a whole scripted run with the shipped test cards, then a search of
everything the system wrote or showed for each card's PAN in any form.

Searched: every file under the data directory (the journal's SQLite file and its WAL, the
gateway's SQLite file, the key directories, the session-id counter), the log (every logger at
DEBUG, to a file), stdout and stderr, the display's frames, the outbox bodies, the gateway's
answers (receipts as JSON and as the HTML page, authorizations, the operator's revenue) and
ledger rows, and what the scripted simulator prints with ``--json``.

Forms of a PAN searched (EMV Book 3 Annex A: tag 5A is the PAN in compressed numeric, tag 57
the track 2 equivalent data): ASCII digits (also in groups of four), BCD as raw bytes and as
hex in upper and lower case, the track 2 equivalent as raw bytes and hex (PAN, separator
``D``, expiry, service code, discretionary data) and in the ISO/IEC 7813 ``=`` text form, the
digits in UTF-16 (both byte orders), and base64 of the BCD, the digits and track 2 at every
alignment; every base64 run found is also decoded and searched (the blob's JSON fields, for
example). A self-check plants each form in a file and asserts the scanner finds it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from hardware.sim.card_script import CardProfile, load_profiles
from hardware.sim.display import render_text
from launcher.simulate import Simulation, run_script
from launcher.simulate import main as simulate_main
from terminal.card import tlv
from terminal.config import Config
from tests.ledger_check import assert_ledger_agrees

TIMEOUT_S = 10

# Two whole charging sessions (Visa, Mastercard), a lost link while charging, a decline, a
# partial approval voided by the plug-in timeout, cards cancelled by a second tap, a crash.
SCRIPT = """
expect idle
tap visa
expect plug-in
plug
ev charge
expect charging
wait 45m
tap visa
expect receipt
unplug
wait 2m
expect idle
tap mastercard
expect plug-in
plug
ev charge
wait 20m
gateway down
wait 10m
tap mastercard
expect receipt
unplug
gateway up
wait 5m
expect idle
tap declined
wait 10s
tap partial
wait 3m
tap maestro
wait 5s
tap maestro
wait 10s
tap amex
wait 5s
restart
wait 3m
tap wallet
wait 5s
tap wallet
wait 10s
tap girocard
wait 5s
tap girocard
wait 10s
expect idle
"""

CARDS = ("visa", "mastercard", "declined", "partial", "maestro", "amex", "wallet", "girocard")

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{12,}={0,2}")
_PAN_TAG = 0x5A
_TRACK2_TAG = 0x57


@dataclass(frozen=True, slots=True)
class KnownCard:
    """A shipped profile's card number and track 2 equivalent, as its script answers them."""

    name: str
    pan: str
    track2: bytes


def card_numbers(profile: CardProfile) -> KnownCard:
    """The PAN (tag 5A) and track 2 equivalent (tag 57) in the profile's card answers."""
    pans: set[str] = set()
    tracks: set[bytes] = set()
    for exchange in profile.script:
        if len(exchange.response) <= 2:
            continue
        for item in tlv.walk(tlv.parse(exchange.response[:-2])):
            if item.tag == _PAN_TAG:
                pans.add(item.value.hex().upper().rstrip("F"))
            elif item.tag == _TRACK2_TAG:
                tracks.add(item.value)
    [pan], [track2] = pans, tracks
    assert track2.hex().upper().startswith(pan + "D"), profile.name
    return KnownCard(name=profile.name, pan=pan, track2=track2)


def _base64_inner(data: bytes) -> Iterator[bytes]:
    """Base64 text that any encoding of a buffer holding `data` contains, for each of the
    three alignments: the 4-character groups made only of `data`'s own bytes."""
    for offset in range(3):
        skip = (3 - offset) % 3  # bytes of `data` before the first group boundary
        whole = (len(data) - skip) // 3 * 3
        if whole >= 3:
            yield base64.b64encode(data[skip : skip + whole])


def needles(card: KnownCard) -> dict[str, bytes]:
    """Every form of the card's number searched for, by name."""
    pan, track2 = card.pan, card.track2
    digits = pan.encode("ascii")
    bcd = bytes.fromhex(pan + "F" * (len(pan) % 2))
    track2_hex = track2.hex()
    forms = {
        "ascii digits": digits,
        "digits in groups of four": " ".join(
            pan[i : i + 4] for i in range(0, len(pan), 4)
        ).encode(),
        "BCD bytes": bcd,
        "BCD hex upper": bcd.hex().upper().encode(),
        "BCD hex lower": bcd.hex().lower().encode(),
        "track 2 bytes": track2,
        "track 2 hex upper": track2_hex.upper().encode(),
        "track 2 hex lower": track2_hex.lower().encode(),
        "track 2 text": track2_hex.upper().rstrip("F").replace("D", "=").encode(),
        "UTF-16-LE digits": pan.encode("utf-16-le"),
        "UTF-16-BE digits": pan.encode("utf-16-be"),
    }
    for label, data in (("BCD", bcd), ("digits", digits), ("track 2", track2)):
        for n, inner in enumerate(_base64_inner(data)):
            forms[f"base64 of {label} (alignment {n})"] = inner
    return forms


def _decoded_base64(data: bytes) -> Iterator[bytes]:
    """Every base64 run in `data`, decoded at each of the four places a group can start (a
    run glued to other letters, in a SQLite page for example, may not start on a group)."""
    for match in _BASE64_RUN.finditer(data):
        run = match.group().rstrip(b"=")
        for cut in range(4):
            piece = run[cut:]
            if len(piece) % 4 == 1:
                piece = piece[:-1]
            try:
                yield base64.b64decode(piece + b"=" * (-len(piece) % 4))
            except (binascii.Error, ValueError):
                continue


_APART = b"\x00\xff\xfe\x00"  # between decoded pieces, so no needle spans two of them


def find_card_data(data: bytes, cards: Iterable[KnownCard]) -> list[str]:
    """The forms of any of `cards` found in `data`, or in base64 decoded from it."""
    haystack = _APART.join([data, *_decoded_base64(data)])
    return [
        f"{card.name}: {form}"
        for card in cards
        for form, needle in needles(card).items()
        if needle in haystack
    ]


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def test_cards() -> list[KnownCard]:
    profiles = load_profiles()
    return [card_numbers(profiles[name]) for name in CARDS]


def test_the_test_pans_are_the_ones_the_profiles_carry(test_cards: list[KnownCard]) -> None:
    by_name = {card.name: card for card in test_cards}
    assert by_name["visa"].pan == "4761739001010010"
    assert by_name["mastercard"].pan.endswith("0004")
    assert all(card.pan[-4:] == load_profiles()[card.name].expect_last4 for card in test_cards)


@pytest.mark.parametrize(
    "form",
    [
        "ascii digits",
        "BCD bytes",
        "BCD hex lower",
        "track 2 hex upper",
        "track 2 text",
        "UTF-16-LE digits",
        "base64 of BCD",
        "base64 in JSON",
    ],
)
def test_the_scanner_finds_a_planted_pan(
    tmp_path: Path, test_cards: list[KnownCard], form: str
) -> None:
    visa = test_cards[0]
    forms = needles(visa)
    bcd = forms["BCD bytes"]
    planted = {
        "base64 of BCD": b"x" + base64.b64encode(b"\x01" + bcd + b"\x02"),
        "base64 in JSON": json.dumps({"blob": base64.b64encode(b"ab" + bcd).decode()}).encode(),
    }.get(form, forms.get(form, b""))
    assert planted
    path = tmp_path / "leak.bin"
    path.write_bytes(b"\x00SQLite format 3\x00" + planted + b"\xff" * 7)

    assert find_card_data(path.read_bytes(), [visa]) != []
    assert (
        find_card_data(b"Visa \xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2 0010", [visa]) == []
    )


def _get(url: str, token: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, timeout=TIMEOUT_S, headers=headers)
    assert response.status_code == 200, url
    return response.content


def _gateway_answers(sim: Simulation) -> dict[str, bytes]:
    base = sim.gateway.url
    rows = sim.gateway.ledger.all_authorizations()
    receipts = [row["receipt_id"] for row in rows if row["receipt_id"]]
    assert len(receipts) >= 2
    answers = {"revenue": _get(f"{base}/operator/revenue", sim.gateway.operator_token)}
    for receipt_id in receipts:
        answers[f"receipt {receipt_id}"] = _get(f"{base}/v1/receipts/{receipt_id}")
        answers[f"receipt page {receipt_id}"] = _get(f"{base}/receipts/{receipt_id}")
    for row in rows:
        answers[f"authorization {row['id']}"] = _get(f"{base}/v1/authorizations/{row['id']}")
    answers["ledger rows"] = json.dumps(rows, default=str).encode()
    answers["ledger movements"] = json.dumps(
        sim.gateway.ledger.all_movements(), default=str
    ).encode()
    return answers


def _shown_and_queued(sim: Simulation) -> dict[str, bytes]:
    frames = list(sim.hardware.display.frames)
    assert frames
    outbox = sim.daemon.journal.outbox()
    assert any(row["kind"] == "authorize" for row in outbox)
    return {
        "display frames": "\n".join(repr(f) + "\n" + render_text(f) for f in frames).encode(),
        "outbox bodies": "\n".join(str(row["body"]) for row in outbox).encode(),
        "outbox answers": "\n".join(str(row.get("answer")) for row in outbox).encode(),
        "journal sessions": json.dumps(sim.daemon.journal.sessions(), default=str).encode(),
        "results": json.dumps(sim.results()).encode(),
    }


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Every logger at DEBUG into a file for the length of the test."""
    path = tmp_path / "debug.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def test_a_whole_run_leaves_no_card_data_anywhere(
    config: Config,
    tmp_path: Path,
    test_cards: list[KnownCard],
    debug_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = config.data_dir
    sim = run_script(config, SCRIPT, data_dir)
    try:
        assert_ledger_agrees(sim)
        assert sim.restarts == 1
        searched = _gateway_answers(sim) | _shown_and_queued(sim)
        tokens = {row["card_token"] for row in sim.gateway.ledger.all_authorizations()}
        live_files = {f"{p} (open)": p.read_bytes() for p in files_under(data_dir)}
    finally:
        sim.close()
    assert any(p.name.endswith("-wal") for p in files_under(data_dir)) or any(
        name.endswith("-wal (open)") for name in live_files
    )
    closed_files = {str(p): p.read_bytes() for p in files_under(data_dir)}
    # The CLI's own output for the same script, on a second data directory.
    script_path = tmp_path / "script.txt"
    script_path.write_text(SCRIPT, encoding="utf-8")
    cli_dir = tmp_path / "cli-data"
    script = script_path.read_text(encoding="utf-8")
    assert simulate_main(config, script_path, script, as_json=True, data_dir=cli_dir) == 0
    cli_files = {str(p): p.read_bytes() for p in files_under(cli_dir)}
    captured = capsys.readouterr()
    searched |= live_files | closed_files | cli_files
    searched |= {
        "log file": debug_log.read_bytes(),
        "stdout": captured.out.encode(),
        "stderr": captured.err.encode(),
    }

    # The search really reads these: the protected values are found where they belong.
    assert searched["log file"], "nothing was logged at DEBUG"
    assert len([line for line in captured.out.splitlines() if line.startswith("{")]) >= 5
    journal = next(v for k, v in closed_files.items() if k.endswith("journal.sqlite3"))
    assert all(token.encode() in journal for token in tokens if token)
    assert b"0010" in searched["results"]

    leaks = {
        where: found
        for where, data in searched.items()
        if (found := find_card_data(data, test_cards))
    }
    assert leaks == {}
