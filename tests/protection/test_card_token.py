"""Card tokens: fleet-wide, collision-free in practice, domain-separated; PAN masking."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from terminal.errors import CardError, KeyMaterialError
from terminal.protection.keys import ProvisionedFleet, provision_fleet
from terminal.protection.module import ProtectionModule
from terminal.protection.token import (
    TokenKey,
    canonical_pan,
    card_token,
    last4,
    mask_pan,
    rfid_token,
)

PAN = "4761739001010010"  # a Visa test-card PAN (EMVCo test cards); no real account
KEY = TokenKey(secret=bytes(range(32)))
FULLWIDTH_PAN = "".join(chr(0xFF10 + int(d)) for d in PAN)  # Unicode digits, not ASCII
TOKEN_SHAPE = re.compile(r"ct_[a-z2-7]{24}")


def _luhn_complete(body: str) -> str:
    """Append the ISO/IEC 7812-1 Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def _protect(module: ProtectionModule, pan: str, pan_sequence: str | None = "01") -> str:
    return module.protect(
        pan=pan,
        expiry="2812",
        pan_sequence=pan_sequence,
        track2=None,
        emv_data=(),
        brand="visa",
    ).token


def test_same_card_gets_same_token_on_two_kiosks_of_a_fleet(fleet: ProvisionedFleet) -> None:
    kiosk_1 = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])
    kiosk_2 = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-2"])

    on_1 = _protect(kiosk_1, PAN)
    on_2 = _protect(kiosk_2, PAN)

    assert on_1 == on_2
    assert TOKEN_SHAPE.fullmatch(on_1)


def test_same_card_is_recognised_for_tap_to_stop_on_the_same_kiosk(
    fleet: ProvisionedFleet,
) -> None:
    kiosk = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])

    assert _protect(kiosk, PAN) == _protect(kiosk, PAN)
    assert _protect(kiosk, PAN) != _protect(kiosk, "4761739001010028")


def test_another_fleet_gives_the_same_card_another_token(
    fleet: ProvisionedFleet, tmp_path: Path
) -> None:
    other = provision_fleet(tmp_path / "other", fleet_id="other", devices=["k"])
    ours = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])
    theirs = ProtectionModule.from_key_dir(other.device_dirs["k"])

    assert _protect(ours, PAN) != _protect(theirs, PAN)


def test_pan_sequence_number_does_not_change_the_token(fleet: ProvisionedFleet) -> None:
    kiosk = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])

    assert _protect(kiosk, PAN, "00") == _protect(kiosk, PAN, "01") == _protect(kiosk, PAN, None)


def test_token_uses_the_pan_digits_only() -> None:
    assert card_token(KEY, "4761 7390 0101 0010") == card_token(KEY, PAN)
    assert card_token(KEY, "4761-7390-0101-0010") == card_token(KEY, PAN)


def test_token_is_keyed_hmac_sha256_of_the_domain_and_pan() -> None:
    import base64
    import hashlib
    import hmac

    mac = hmac.new(KEY.secret, b"ev-terminal/card-token/v1\x00" + PAN.encode(), hashlib.sha256)
    expected = "ct_" + base64.b32encode(mac.digest()[:15]).decode().lower()

    assert card_token(KEY, PAN) == expected


def test_100k_generated_pans_never_collide() -> None:
    rng = random.Random(20240917)
    pans: set[str] = set()
    while len(pans) < 100_000:
        length = rng.choice((15, 16, 19))
        body = rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(length - 2))
        pans.add(_luhn_complete(body))

    tokens = {card_token(KEY, pan) for pan in pans}

    assert len(tokens) == len(pans)


def test_rfid_tokens_are_domain_separated_from_card_tokens() -> None:
    uid = PAN.encode("ascii")  # the very bytes the card token hashes

    rfid = rfid_token(KEY, uid)
    card = card_token(KEY, PAN)

    assert rfid.startswith("rt_")
    assert card.startswith("ct_")
    assert rfid[3:] != card[3:]


def test_rfid_token_is_stable_and_depends_on_every_uid_byte() -> None:
    uid = bytes.fromhex("04A224C2B25E80")

    assert rfid_token(KEY, uid) == rfid_token(KEY, bytes.fromhex("04A224C2B25E80"))
    assert rfid_token(KEY, uid) != rfid_token(KEY, bytes.fromhex("04A224C2B25E81"))
    assert re.fullmatch(r"rt_[a-z2-7]{24}", rfid_token(KEY, uid))


def test_empty_rfid_uid_is_refused() -> None:
    with pytest.raises(CardError):
        rfid_token(KEY, b"")


def test_mask_shows_the_last_four_digits_only() -> None:
    assert mask_pan(PAN) == "\u2022\u2022\u2022\u2022 0010"
    assert last4(PAN) == "0010"
    assert "4761" not in mask_pan(PAN)


@pytest.mark.parametrize("bad", ["", "4761x39001010010", "12345678901", "1" * 20, FULLWIDTH_PAN])
def test_malformed_pan_is_a_card_error(bad: str) -> None:
    with pytest.raises(CardError):
        canonical_pan(bad)


def test_token_key_must_be_32_bytes_and_hides_itself() -> None:
    with pytest.raises(KeyMaterialError):
        TokenKey(secret=b"short")
    key = TokenKey(secret=bytes.fromhex("AB" * 32))

    assert "AB" not in repr(key).upper().replace("TOKENKEY", "")
    assert "hidden" in repr(key)
