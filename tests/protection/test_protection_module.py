"""The protection module: device encrypts, host decrypts; nothing in clear leaves it."""

from __future__ import annotations

import base64
import json

import pytest

from terminal.errors import CardError, KeyMaterialError, ProtectedDataError
from terminal.protection.blob import EncryptedBlob
from terminal.protection.dukpt import InitialKeyId, Ksn, derive_initial_key
from terminal.protection.host import blob_bdk_id, decrypt_blob
from terminal.protection.keys import ProvisionedFleet, load_device_keys, load_gateway_keys
from terminal.protection.module import ProtectedCard, ProtectionModule
from terminal.protection.registers import FutureKeys
from terminal.protection.token import TokenKey

PAN = "4761739001010010"
TRACK2 = bytes.fromhex("4761739001010010D28122011143804400000F")
EMV = (
    (0x5A, bytes.fromhex("4761739001010010")),
    (0x5F24, bytes.fromhex("281231")),
    (0x5F34, bytes.fromhex("01")),
    (0x9F26, bytes.fromhex("1122334455667788")),
    (0x57, TRACK2),
)
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = InitialKeyId.from_hex("1234567890123456")


class MemoryRegisterStore:
    """A RegisterStore fake kept in memory, recording the next counter of every save; it
    starts as a device that has used counter `start` (derived from the IK as on conversion)."""

    def __init__(self, start: int = 0, *, fail: bool = False, bdk: bytes = BDK) -> None:
        self.value = FutureKeys.after(derive_initial_key(bdk, IKID), IKID, start)
        self.saved: list[int | None] = []
        self.fail = fail

    def load(self) -> FutureKeys:
        return self.value

    def save(self, keys: FutureKeys) -> None:
        if self.fail:
            raise KeyMaterialError("disk full")
        self.value = keys
        self.saved.append(keys.counter)


def _module(store: MemoryRegisterStore) -> ProtectionModule:
    return ProtectionModule(token_key=TokenKey(secret=bytes(32)), registers=store)


def _protect(module: ProtectionModule, **overrides: object) -> ProtectedCard:
    fields: dict[str, object] = {
        "pan": PAN,
        "expiry": "2812",
        "pan_sequence": "01",
        "track2": TRACK2,
        "emv_data": EMV,
        "brand": "visa",
    }
    fields.update(overrides)
    return module.protect(**fields)  # type: ignore[arg-type]


def test_device_encrypts_and_host_decrypts_the_card_data(fleet: ProvisionedFleet) -> None:
    kiosk = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-2"])
    gateway = load_gateway_keys(fleet.gateway_dir)

    card = _protect(kiosk)
    wire = json.loads(json.dumps(card.to_json()))
    data = decrypt_blob(gateway.bdk, wire["blob"])

    assert data == {
        "pan": PAN,
        "expiry": "2812",
        "pan_sequence": "01",
        "track2": TRACK2.hex().upper(),
        "emv": [
            ["5A", "4761739001010010"],
            ["5F24", "281231"],
            ["5F34", "01"],
            ["9F26", "1122334455667788"],
            ["57", TRACK2.hex().upper()],
        ],
    }
    assert blob_bdk_id(wire["blob"]) == fleet.bdk_id
    assert wire["blob"]["ksn"] == fleet.initial_key_ids["kiosk-2"] + "00000001"


def test_aes256_fleet_round_trips(fleet256: ProvisionedFleet) -> None:
    kiosk = ProtectionModule.from_key_dir(fleet256.device_dirs["kiosk-a"])
    gateway = load_gateway_keys(fleet256.gateway_dir)

    card = _protect(kiosk, track2=None, pan_sequence=None, emv_data=())

    assert card.blob.to_json()["key_type"] == "AES-256"
    data = decrypt_blob(gateway.bdk, card.blob.to_json())
    assert data["pan"] == PAN
    assert data["track2"] is None
    assert data["pan_sequence"] is None
    assert data["emv"] == []


def test_protected_card_carries_display_fields() -> None:
    card = _protect(_module(MemoryRegisterStore()), pan="4761 7390 0101 0010")

    assert card.masked_pan == "\u2022\u2022\u2022\u2022 0010"
    assert card.last4 == "0010"
    assert card.brand == "visa"
    assert (card.expiry_month, card.expiry_year) == (12, 2028)


def test_repr_and_json_hold_no_pan_digits_nor_track2(fleet: ProvisionedFleet) -> None:
    kiosk = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])

    card = _protect(kiosk)
    texts = [repr(card), repr(card.blob), json.dumps(card.to_json()), repr(kiosk)]

    for text in texts:
        assert PAN not in text
        assert PAN[:6] not in text  # the BIN
        assert PAN[6:12] not in text  # the middle digits that masking hides
        assert TRACK2.hex().upper() not in text.upper()
        assert "D2812" not in text  # track 2 separator + expiry


def test_blob_is_ready_for_a_json_wire_body() -> None:
    card = _protect(_module(MemoryRegisterStore()))
    body = card.blob.to_json()

    assert set(body) == {
        "format",
        "ksn",
        "key_type",
        "cipher",
        "iv",
        "ciphertext",
        "mac_alg",
        "mac",
    }
    assert all(isinstance(v, str) for v in body.values())
    assert body["ksn"] == "123456789012345600000001"
    assert body["cipher"] == "AES-CBC-PKCS7"
    assert len(base64.b64decode(body["iv"])) == 16
    assert EncryptedBlob.from_json(body) == card.blob


def test_each_transaction_uses_a_new_ksn_and_iv() -> None:
    module = _module(MemoryRegisterStore())

    blobs = [_protect(module).blob for _ in range(5)]

    assert [b.ksn.counter for b in blobs] == [1, 2, 3, 4, 5]
    assert len({b.iv for b in blobs}) == 5
    assert len({b.ciphertext for b in blobs}) == 5


def test_the_state_after_the_key_is_saved_before_the_key_is_used() -> None:
    store = MemoryRegisterStore(41)
    module = _module(store)

    card = _protect(module)

    assert store.saved == [43]  # saved: the next counter is 43, the key of 42 erased
    assert card.blob.ksn.counter == 42


def test_no_blob_is_made_when_the_counter_cannot_be_saved() -> None:
    store = MemoryRegisterStore(7, fail=True)
    module = _module(store)

    with pytest.raises(KeyMaterialError):
        _protect(module)
    assert module.last_counter == 0  # none used
    store.fail = False
    assert _protect(module).blob.ksn.counter == 8


def test_counters_with_more_than_16_one_bits_are_skipped() -> None:
    store = MemoryRegisterStore(0x1FFFE)
    module = _module(store)

    card = _protect(module)

    assert card.blob.ksn.counter == 0x20000
    assert decrypt_blob(BDK, card.blob)["pan"] == PAN


def test_exhausted_counter_stops_protection() -> None:
    module = _module(MemoryRegisterStore(0xFFFF0000))

    with pytest.raises(KeyMaterialError, match="exhausted"):
        _protect(module)


def test_ksn_is_never_reused_across_restarts(fleet: ProvisionedFleet) -> None:
    key_dir = fleet.device_dirs["kiosk-1"]
    seen: list[str] = []
    for _restart in range(4):
        kiosk = ProtectionModule.from_key_dir(key_dir)
        seen += [_protect(kiosk).blob.ksn.hex() for _ in range(3)]

    assert len(set(seen)) == len(seen) == 12
    assert [Ksn.from_hex(k).counter for k in seen] == list(range(1, 13))


def test_crash_after_reserving_a_counter_skips_it_after_restart(
    fleet: ProvisionedFleet,
) -> None:
    key_dir = fleet.device_dirs["kiosk-1"]
    kiosk = ProtectionModule.from_key_dir(key_dir)
    _protect(kiosk)

    def broken_random(n: int) -> bytes:
        raise OSError("entropy source gone")

    keys = load_device_keys(key_dir)
    crashing = ProtectionModule(
        token_key=keys.token_key, registers=keys.registers, random_bytes=broken_random
    )
    with pytest.raises(OSError):
        _protect(crashing)

    restarted = ProtectionModule.from_key_dir(key_dir)
    assert _protect(restarted).blob.ksn.counter == 3  # 2 was reserved, maybe used: never again


def test_missing_register_file_refuses_to_start(fleet: ProvisionedFleet) -> None:
    key_dir = fleet.device_dirs["kiosk-1"]
    (key_dir / "dukpt-registers").unlink()

    with pytest.raises(KeyMaterialError, match="dukpt-"):
        ProtectionModule.from_key_dir(key_dir)


def test_malformed_register_file_refuses_to_start(fleet: ProvisionedFleet) -> None:
    key_dir = fleet.device_dirs["kiosk-1"]
    (key_dir / "dukpt-registers").write_text("not a register file\n")

    with pytest.raises(KeyMaterialError, match="dukpt-registers"):
        ProtectionModule.from_key_dir(key_dir)


def test_host_refuses_a_tampered_blob() -> None:
    body = _protect(_module(MemoryRegisterStore())).blob.to_json()
    ciphertext = bytearray(base64.b64decode(body["ciphertext"]))
    ciphertext[0] ^= 1
    tampered = {**body, "ciphertext": base64.b64encode(bytes(ciphertext)).decode()}

    with pytest.raises(ProtectedDataError, match="authentication failed"):
        decrypt_blob(BDK, tampered)


def test_host_refuses_a_blob_moved_to_another_ksn() -> None:
    body = _protect(_module(MemoryRegisterStore())).blob.to_json()
    moved = {**body, "ksn": body["ksn"][:-1] + "2"}

    with pytest.raises(ProtectedDataError, match="authentication failed"):
        decrypt_blob(BDK, moved)


def test_host_with_another_bdk_cannot_decrypt() -> None:
    body = _protect(_module(MemoryRegisterStore())).blob.to_json()

    with pytest.raises(ProtectedDataError, match="authentication failed"):
        decrypt_blob(bytes(16), body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", "something/else"),
        ("ksn", "1234"),
        ("key_type", "DES"),
        ("iv", "!!!"),
        ("mac", base64.b64encode(b"short").decode()),
        ("ciphertext", base64.b64encode(b"not whole blocks").decode() + "AA=="),
    ],
)
def test_host_refuses_a_malformed_blob(field: str, value: str) -> None:
    body = _protect(_module(MemoryRegisterStore())).blob.to_json()

    with pytest.raises(ProtectedDataError):
        decrypt_blob(BDK, {**body, field: value})


def test_host_refuses_a_blob_with_an_invalid_counter() -> None:
    body = _protect(_module(MemoryRegisterStore())).blob.to_json()

    with pytest.raises(ProtectedDataError, match="not valid"):
        decrypt_blob(BDK, {**body, "ksn": "1234567890123456" + "0001FFFF"})


@pytest.mark.parametrize("expiry", ["2813", "281", "28122", "YYMM", "2800"])
def test_malformed_expiry_is_a_card_error(expiry: str) -> None:
    with pytest.raises(CardError):
        _protect(_module(MemoryRegisterStore()), expiry=expiry)


def test_malformed_card_data_uses_no_counter() -> None:
    store = MemoryRegisterStore()
    module = _module(store)

    with pytest.raises(CardError):
        _protect(module, pan="12AB")
    assert store.saved == []


def test_a_card_token_alone_uses_no_counter() -> None:
    store = MemoryRegisterStore()
    module = _module(store)

    assert module.card_token("4761 7390 0101 0010") == _protect(module).token
    assert store.saved == [2]  # only the one protected card took a key


def test_rfid_token_comes_from_the_fleet_key(fleet: ProvisionedFleet) -> None:
    kiosk_1 = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-1"])
    kiosk_2 = ProtectionModule.from_key_dir(fleet.device_dirs["kiosk-2"])
    uid = bytes.fromhex("04A224C2B25E80")

    assert kiosk_1.rfid_token(uid) == kiosk_2.rfid_token(uid)
    assert kiosk_1.card_token(PAN) == _protect(kiosk_2).token
