"""Forward secrecy (ANSI X9.24-3-2017 future-key registers): whoever copies the device's key
directory at any moment cannot decrypt the card data of any transaction before the copy.

The attacker is played with the standard's own derivations: from every key-sized value found
in the copied files (each register, and anything else that looks like a key), it derives the
transaction key of a KSN both as if the value were the Initial Key (walking every one-bit of
the counter) and as if it were an intermediate key of any counter that is a bit-prefix of the
KSN's (walking the remaining bits), then the working keys, and tries the blob's MAC. The same
attacker succeeds on the transaction *after* the copy: the attack is real, the defence is the
erasure.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from terminal.errors import KeyMaterialError
from terminal.protection.blob import EncryptedBlob, cmac
from terminal.protection.dukpt import (
    InitialKeyId,
    KeyType,
    KeyUsage,
    Ksn,
    derivation_data,
    derive_initial_key,
    derive_key,
    derive_transaction_key,
    derive_working_key,
    next_counter,
)
from terminal.protection.host import decrypt_blob
from terminal.protection.keys import (
    INITIAL_KEY_FILE,
    ProvisionedFleet,
    load_device_keys,
    load_gateway_keys,
)
from terminal.protection.module import ProtectionModule
from terminal.protection.registers import REGISTERS_FILE, FileRegisterStore, FutureKeys

PAN = "4761739001010010"


def _protect(module: ProtectionModule) -> EncryptedBlob:
    return module.protect(
        pan=PAN,
        expiry="2812",
        pan_sequence="01",
        track2=bytes.fromhex("4761739001010010D28122011143804400000F"),
        emv_data=((0x9F26, bytes.fromhex("1122334455667788")),),
        brand="visa",
    ).blob


def _key_candidates(key_dir: Path) -> set[bytes]:
    """Every 16-, 24- or 32-byte value written in hex anywhere in the copied files."""
    found: set[bytes] = set()
    for path in key_dir.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_bytes().decode("latin-1")
        for run in re.findall(r"[0-9A-Fa-f]{32,}", text):
            for length in (32, 48, 64):
                for start in range(0, len(run) - length + 1, 2):
                    found.add(bytes.fromhex(run[start : start + length]))
    return found


def _attacker_opens(candidates: set[bytes], blob: EncryptedBlob) -> bool:
    """Whether any candidate key leads, by the standard's derivations, to a MAC key that
    verifies the blob (the attacker then has the data key too)."""
    ksn, key_type = blob.ksn, blob.key_type
    for candidate in candidates:
        if len(candidate) != key_type.length:
            continue
        transaction_keys = [derive_transaction_key(candidate, ksn)]  # as the IK
        # As an intermediate key of counter prefix p (the counter's bits above some bit):
        for bit in range(32):
            prefix = ksn.counter >> bit << bit
            if prefix == 0:
                continue
            key = candidate
            for lower in range(bit - 1, -1, -1):
                if ksn.counter >> lower & 1:
                    context = ksn.initial_key_id.derivation_id + (
                        (ksn.counter >> lower << lower).to_bytes(4, "big")
                    )
                    data = derivation_data(KeyUsage.KEY_DERIVATION, key_type, context)
                    key = derive_key(key, key_type, data)
            transaction_keys.append(key)
        for transaction_key in transaction_keys:
            mac_key = derive_working_key(transaction_key, ksn, KeyUsage.MAC_GENERATION, key_type)
            if cmac(mac_key, blob.mac_input()) == blob.mac:
                return True
    return False


def test_a_copy_of_the_key_directory_cannot_decrypt_any_earlier_transaction(
    fleet: ProvisionedFleet, tmp_path: Path
) -> None:
    key_dir = fleet.device_dirs["kiosk-1"]
    gateway = load_gateway_keys(fleet.gateway_dir)
    assert not (key_dir / INITIAL_KEY_FILE).exists()  # provisioning loaded the IK, kept none
    module = ProtectionModule.from_key_dir(key_dir)
    blobs: list[EncryptedBlob] = []
    copies: list[tuple[int, Path]] = []
    for n in range(12):
        copy = tmp_path / f"copy-{n}"
        shutil.copytree(key_dir, copy)  # the thief's copy, taken between transactions
        copies.append((len(blobs), copy))
        blobs.append(_protect(module))
    for blob in blobs:
        assert decrypt_blob(gateway.bdk, blob.to_json())["pan"] == PAN  # the host still can
    for taken_after, copy in copies:
        candidates = _key_candidates(copy)
        assert candidates, "the copy holds the device's future keys"
        for earlier in blobs[:taken_after]:
            assert not _attacker_opens(candidates, earlier), (taken_after, earlier.ksn.hex())
        # The control: the next transaction's key is in the copy (the attack is a real one).
        assert _attacker_opens(candidates, blobs[taken_after])


def test_the_attacker_would_win_with_the_initial_key_on_disk(
    fleet: ProvisionedFleet, tmp_path: Path
) -> None:
    """The self-check: an IK left in the key directory (the old design) opens every blob."""
    key_dir = fleet.device_dirs["kiosk-1"]
    module = ProtectionModule.from_key_dir(key_dir)
    blobs = [_protect(module) for _ in range(3)]
    gateway = load_gateway_keys(fleet.gateway_dir)
    ikid = load_device_keys(key_dir).registers.load().initial_key_id
    planted = tmp_path / "planted"
    shutil.copytree(key_dir, planted)
    (planted / "leak").write_text(derive_initial_key(gateway.bdk, ikid).hex())
    assert all(_attacker_opens(_key_candidates(planted), blob) for blob in blobs)


def test_a_device_with_an_initial_key_on_disk_converts_and_wipes_it(tmp_path: Path) -> None:
    bdk = bytes(range(16))
    ikid = InitialKeyId.from_hex("0102030405060708")
    ik = derive_initial_key(bdk, ikid)
    key_dir = tmp_path / "dev"
    key_dir.mkdir(mode=0o700)
    for name, text in (
        ("token.key", "00" * 32),
        (INITIAL_KEY_FILE, ik.hex().upper()),
        ("dukpt-ikid", ikid.hex()),
        ("dukpt-counter", "00000005"),
    ):
        (key_dir / name).write_text(text + "\n")
        (key_dir / name).chmod(0o600)
    module = ProtectionModule.from_key_dir(key_dir)
    assert not (key_dir / INITIAL_KEY_FILE).exists()
    assert not (key_dir / "dukpt-counter").exists()
    blob = _protect(module)
    assert blob.ksn.counter == 6  # the counter carries on from the old file
    assert decrypt_blob(bdk, blob.to_json())["pan"] == PAN
    assert ik.hex().upper().encode() not in b"".join(
        p.read_bytes() for p in key_dir.iterdir() if p.is_file()
    )


def test_registers_give_the_standards_keys_past_the_first_skipped_counter() -> None:
    ik = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")
    ikid = InitialKeyId.from_hex("1234567890123456")
    keys = FutureKeys.load_initial_key(ik, ikid)
    counter = 0
    for _ in range(70_000):
        expected = next_counter(counter)
        assert expected is not None
        used, key, keys = keys.take()
        assert used == expected
        if used % 997 == 1 or used > 0xFFF0:
            ksn = Ksn(initial_key_id=ikid, counter=used)
            assert key == derive_transaction_key(ik, ksn)
        counter = used
        assert len(keys.registers) <= 32


def test_the_conversion_from_a_counter_gives_the_same_registers_as_running_to_it() -> None:
    ik = bytes(range(32))
    ikid = InitialKeyId.from_hex("A1A2A3A4B1B2B3B4")
    keys = FutureKeys.load_initial_key(ik, ikid)
    for _ in range(300):
        last, _key, keys = keys.take()
        assert FutureKeys.after(ik, ikid, last) == keys


def test_the_register_file_round_trips_and_refuses_damage(tmp_path: Path) -> None:
    ik = bytes(range(16))
    keys = FutureKeys.load_initial_key(ik, InitialKeyId.from_hex("0102030405060708"))
    store = FileRegisterStore(tmp_path / REGISTERS_FILE)
    store.save(keys)
    assert store.load() == keys
    text = (tmp_path / REGISTERS_FILE).read_text()
    # The file holds the state twice (slots.py): one damaged copy leaves the other.
    (tmp_path / REGISTERS_FILE).write_text(text.replace("register 05 ", "register 06 ", 1))
    assert FileRegisterStore(tmp_path / REGISTERS_FILE).load() == keys
    (tmp_path / REGISTERS_FILE).write_text(text.replace("register 05 ", "register 06 "))
    with pytest.raises(KeyMaterialError, match="damaged"):
        FileRegisterStore(tmp_path / REGISTERS_FILE).load()


def test_a_save_cut_short_after_the_old_file_was_zeroed_recovers_the_new_state(
    tmp_path: Path,
) -> None:
    ik = bytes(range(16))
    store = FileRegisterStore(tmp_path / REGISTERS_FILE)
    first = FutureKeys.load_initial_key(ik, InitialKeyId.from_hex("0102030405060708"))
    store.save(first)
    _, _, second = first.take()
    # The power went after the new file was written and the old one zeroed, before the rename.
    (tmp_path / f".{REGISTERS_FILE}.tmp").write_text(second.to_text())
    (tmp_path / REGISTERS_FILE).write_bytes(bytes(len(first.to_text())))
    assert store.load() == second
    assert not (tmp_path / f".{REGISTERS_FILE}.tmp").exists()


def test_an_exhausted_key_refuses_and_keeps_no_register() -> None:
    ik = bytes(range(16))
    ikid = InitialKeyId.from_hex("0102030405060708")
    keys = FutureKeys.after(ik, ikid, 0xFFFF_0000)
    assert keys.counter is None and keys.registers == {}
    with pytest.raises(KeyMaterialError, match="exhausted"):
        keys.take()
    last = FutureKeys.after(ik, ikid, 0xFFFE_8000)
    used, _, after = last.take()
    assert used == 0xFFFF_0000
    assert after.counter is None and after.registers == {}
    assert KeyType.for_key(ik) is last.key_type
