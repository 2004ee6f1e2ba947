"""Card profiles as data files and the `ScriptedCard` that replays them."""

from __future__ import annotations

import pytest

from hardware.ports import CardGone, CardTarget, ReaderFault
from hardware.sim.card_script import (
    PROFILES_DIR,
    ProfileError,
    ScriptedCard,
    load_named,
    load_profiles,
    parse_profile,
)

REQUIRED = (
    "visa",
    "mastercard",
    "declined",
    "partial",
    "timeout",
    "wallet",
    "expired",
    "unknown-aid",
    "tearing",
    "malformed",
    "maestro",
    "amex",
    "girocard",
    "rfid",
    "rfid-2",
)

HEADER = "name: t\nkind: iso-dep\nuid: 08010203\n"


def _card(script: str, replay: str = "strict") -> ScriptedCard:
    return ScriptedCard(parse_profile(HEADER + f"replay: {replay}\n" + script))


def test_every_required_profile_ships() -> None:
    profiles = load_profiles()
    assert set(REQUIRED) <= set(profiles)
    assert load_named("visa") == profiles["visa"]
    assert PROFILES_DIR.is_dir()


def test_uid_cards_carry_seven_byte_uids_and_no_apdus() -> None:
    for name in ("rfid", "rfid-2"):
        card = load_named(name).card()
        assert isinstance(card, CardTarget)
        assert not card.iso_dep
        assert len(card.uid) == 7
        with pytest.raises(ReaderFault):
            card.transceive(bytes.fromhex("00A4040000"))
    assert load_named("rfid").uid != load_named("rfid-2").uid


def test_strict_replay_answers_in_order() -> None:
    card = _card("send: 00B2010C00\nresp: 7000 9000\nsend: 00B2020C00\nresp: 9000\n")
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("70009000")
    assert not card.finished
    assert card.transceive(bytes.fromhex("00B2020C00")) == bytes.fromhex("9000")
    assert card.finished
    assert card.history[0] == (bytes.fromhex("00B2010C00"), bytes.fromhex("70009000"))


def test_a_card_that_lost_power_answers_a_new_transaction_from_the_top() -> None:
    card = _card("send: 00B2010C00\nresp: 7000 9000\nsend: 00B2020C00\nresp: 9000\n")
    card.transceive(bytes.fromhex("00B2010C00"))
    card.transceive(bytes.fromhex("00B2020C00"))
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("6A83")  # used up
    card.power_lost()  # the reader's field went off under it
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("70009000")
    assert len(card.history) == 4  # what was exchanged before stays recorded


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("00A4040002AABB00", "6A82"),
        ("00B2030C00", "6A83"),
        ("80CA9F3600", "6A88"),
        ("80AE800000", "6D00"),
    ],
)
def test_unexpected_commands_get_a_card_status_word(command: str, status: str) -> None:
    card = _card("send: 00B2010C00\nresp: 9000\n")
    assert card.transceive(bytes.fromhex(command)) == bytes.fromhex(status)
    # the script does not move: the expected command still gets its answer
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("9000")


def test_strict_replay_does_not_skip_ahead() -> None:
    card = _card("send: 80CA9F7F00\nresp: 9000\nsend: 00B2010C00\nresp: 7000 9000\n")
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("6A83")


def test_lenient_replay_skips_commands_ours_never_sends() -> None:
    card = _card("send: 80CA9F7F00\nresp: 9000\nsend: 00B2010C00\nresp: 7000 9000\n", "lenient")
    assert card.transceive(bytes.fromhex("00B2010C00")) == bytes.fromhex("70009000")
    assert card.finished
    # never backwards
    assert card.transceive(bytes.fromhex("80CA9F7F00")) == bytes.fromhex("6A88")


def test_wildcards_match_varying_data() -> None:
    card = _card("send: 80 A8 00 00 05 83 02 .. .. *\nresp: 9000\nsend:\nresp: 6700\n")
    assert card.transceive(bytes.fromhex("80A80000058302123400")) == bytes.fromhex("9000")
    assert card.transceive(bytes.fromhex("0102030405")) == bytes.fromhex("6700")


def test_wildcard_does_not_match_a_different_header() -> None:
    card = _card("send: 80 A8 00 00 04 83 02 *\nresp: 9000\n")
    assert card.transceive(bytes.fromhex("80AE80000483020000")) == bytes.fromhex("6D00")


def test_tearing_raises_card_gone_from_then_on() -> None:
    card = _card("send: 00B2010C00\nresp: gone\nsend: 00B2020C00\nresp: 9000\n")
    with pytest.raises(CardGone):
        card.transceive(bytes.fromhex("00B2010C00"))
    with pytest.raises(CardGone):
        card.transceive(bytes.fromhex("00B2020C00"))
    assert card.history == [
        (bytes.fromhex("00B2010C00"), None),
        (bytes.fromhex("00B2020C00"), None),
    ]


def test_a_test_can_take_the_card_away() -> None:
    card = _card("send: 00B2010C00\nresp: 9000\n")
    card.remove()
    with pytest.raises(CardGone):
        card.transceive(bytes.fromhex("00B2010C00"))


def test_mute_card_raises_reader_fault() -> None:
    card = _card("send:\nresp: mute\n")
    with pytest.raises(ReaderFault):
        card.transceive(b"\x00\xa4\x04\x00\x00")


def test_trace_lines_without_space_after_colon_parse() -> None:
    profile = parse_profile(HEADER + "#CPLC\nsend: 80 CA 9F 7F 00\nresp:9F 4F 01 00 90 00\n")
    assert profile.script[0].response == bytes.fromhex("9F4F01009000")


@pytest.mark.parametrize(
    "text",
    [
        "kind: iso-dep\nuid: 08010203\n",  # no name
        "name: t\nkind: nfc\nuid: 08010203\n",  # unknown kind
        "name: t\nkind: iso-dep\nuid: 0801\n",  # 2-byte uid
        HEADER + "colour: red\n",  # unknown key
        HEADER + "send: 00B2\n",  # send without resp
        HEADER + "resp: 9000\n",  # resp without send
        HEADER + "send: 00B2\nsend: 00B2\nresp: 9000\n",
        HEADER + "send: 00 ZZ\nresp: 9000\n",
        HEADER + "send: 00B2\nresp: 90\n",  # no full status word
        HEADER + "send: 00B2\nresp: maybe\n",
        HEADER + "expect-expiry: 12/49\n",
        HEADER + "expect-last4: 12\n",
        HEADER + "name: u\n",  # given twice
        "name: t\nkind: uid\nuid: 04010203040506\nsend: 00\nresp: 9000\n",
    ],
)
def test_invalid_profiles_are_refused_with_the_line(text: str) -> None:
    with pytest.raises(ProfileError):
        parse_profile(text)


def test_profile_name_must_match_its_file(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "other.card"
    path.write_text(HEADER)
    with pytest.raises(ProfileError):
        load_profiles(path.parent)
    with pytest.raises(ProfileError):
        load_named("missing", path.parent)
