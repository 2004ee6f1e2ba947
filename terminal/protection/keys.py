"""Keys as files: loading a device's or the gateway's key directory, and provisioning a fleet.

Keys never live in the TOML configuration; the configuration names a key directory. Every
key file is one line of upper-case hex and must be readable by its owner only: a file with
any group or other permission bit (mode & 0o077) is refused with KeyMaterialError naming the
file, as OpenSSH refuses a private key that others can read.

A device key directory (mode 0700) holds::

    token.key             the fleet token key (32 bytes)                 (token.py)
    dukpt-ikid            the DUKPT Initial Key ID: BDK ID ‖ derivation ID (8 bytes)
    dukpt-registers       the next transaction counter and the future-key registers
                          (ANSI X9.24-3-2017; registers.py): the Initial Key is never kept
    ocmf-signing.key      the device's OCMF reading key (ECDSA P-256, PKCS#8 PEM)
    ocmf-signing.pub.pem  its public key
    ocmf-pagination       the last reserved OCMF pagination counter (shell/signed_readings.py)

A key directory written before the registers (``dukpt-ik.key`` with the Initial Key and
``dukpt-counter`` with the last counter used) is converted on first load: the registers for
the next counter are derived and saved, then both old files are overwritten with zeros and
removed.

The gateway key directory holds ``bdk.key`` (the Base Derivation Key, never on a device),
``token.key`` and ``fleet.json`` (fleet id, BDK ID, key type, each device's Initial Key ID and
OCMF public key, and the revoked devices'; not secret, kept 0600 all the same). Only the
devices under ``devices`` are the fleet's: a revoked device's card data is refused.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from terminal.errors import ConfigError, KeyMaterialError
from terminal.protection.counter import COUNTER_FILE_NAME, FileCounterStore, write_counter_file
from terminal.protection.dukpt import (
    BDK_ID_LENGTH,
    InitialKeyId,
    KeyType,
    derive_initial_key,
)
from terminal.protection.registers import (
    REGISTERS_FILE,
    FileRegisterStore,
    FutureKeys,
    wipe_file,
)
from terminal.protection.token import TOKEN_KEY_LENGTH, TokenKey

TOKEN_KEY_FILE = "token.key"
INITIAL_KEY_FILE = "dukpt-ik.key"
INITIAL_KEY_ID_FILE = "dukpt-ikid"
BDK_FILE = "bdk.key"
FLEET_FILE = "fleet.json"
OCMF_KEY_FILE = "ocmf-signing.key"  # the names `terminal.shell.signed_readings` loads
OCMF_PUBLIC_KEY_FILE = "ocmf-signing.pub.pem"
OCMF_PAGINATION_FILE = "ocmf-pagination"
GATEWAY_DIR = "gateway"
DEVICES_DIR = "devices"

_MAX_KEY_FILE_BYTES = 4096
_GROUP_OTHER_BITS = 0o077
_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_DERIVATION_ID = 0xFFFF_FFFF


def read_key_file(path: Path, *, lengths: Sequence[int]) -> bytes:
    """Read a one-line hex key file whose decoded length is one of `lengths`.

    The mode is checked on the opened descriptor (no race with a chmod in between); symlinks
    are followed, the file they point to must be a regular file only its owner can access.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyMaterialError(f"{path}: key file missing") from None
    except OSError as exc:
        raise KeyMaterialError(f"{path}: key file unreadable: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyMaterialError(f"{path}: not a regular file")
        if info.st_mode & _GROUP_OTHER_BITS:
            raise KeyMaterialError(
                f"{path}: key file is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); it must be 0600 (chmod 600 {path})"
            )
        raw = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise KeyMaterialError(f"{path}: key file too large")
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KeyMaterialError(f"{path}: key file is not one line of hex digits") from None
    if len(key) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise KeyMaterialError(f"{path}: key is {len(key)} bytes, expected {allowed}")
    return key


_AES_LENGTHS = tuple(key_type.length for key_type in KeyType)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceKeys:
    """A kiosk's key material, loaded from its key directory. Its repr hides every key."""

    token_key: TokenKey
    registers: FileRegisterStore

    def __repr__(self) -> str:
        return f"DeviceKeys(registers={self.registers!r}, keys=<hidden>)"


def load_device_keys(key_dir: Path) -> DeviceKeys:
    """Load and check a device key directory; KeyMaterialError names the file at fault.
    An Initial Key still on disk is converted to registers and wiped (see above)."""
    token = read_key_file(key_dir / TOKEN_KEY_FILE, lengths=(TOKEN_KEY_LENGTH,))
    ikid = InitialKeyId.from_bytes(read_key_file(key_dir / INITIAL_KEY_ID_FILE, lengths=(8,)))
    registers = FileRegisterStore(key_dir / REGISTERS_FILE)
    initial_key_path = key_dir / INITIAL_KEY_FILE
    counter_path = key_dir / COUNTER_FILE_NAME
    if not registers.exists():
        if not initial_key_path.exists():
            raise KeyMaterialError(
                f"{registers.path}: DUKPT register file missing; re-provision the device"
            )
        initial_key = read_key_file(initial_key_path, lengths=_AES_LENGTHS)
        if not counter_path.is_file():
            raise KeyMaterialError(f"{counter_path}: DUKPT counter file missing")
        last = FileCounterStore(counter_path).load()
        registers.save(FutureKeys.after(initial_key, ikid, last), exclusive=True)
    # Saved (or saved before a crash cut the conversion short): the old files go.
    wipe_file(initial_key_path)
    wipe_file(counter_path)
    return DeviceKeys(token_key=TokenKey(secret=token), registers=registers)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayKeys:
    """The gateway's key material for one fleet. Its repr hides the BDK and token key."""

    fleet_id: str
    bdk_id: bytes
    key_type: KeyType
    bdk: bytes = field(repr=False)
    token_key: TokenKey
    devices: Mapping[str, InitialKeyId]
    # Each device's OCMF signing public key (hex DER), as `provision` recorded it: what the
    # driver's transparency software checks the signed meter readings against.
    ocmf_keys: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"GatewayKeys(fleet_id={self.fleet_id!r}, bdk_id={self.bdk_id.hex().upper()}, "
            f"key_type={self.key_type.label}, devices={len(self.devices)}, keys=<hidden>)"
        )


def load_gateway_keys(key_dir: Path) -> GatewayKeys:
    """Load the gateway side written by `provision_fleet`."""
    bdk = read_key_file(key_dir / BDK_FILE, lengths=_AES_LENGTHS)
    token = read_key_file(key_dir / TOKEN_KEY_FILE, lengths=(TOKEN_KEY_LENGTH,))
    fleet_path = key_dir / FLEET_FILE
    try:
        fleet = json.loads(fleet_path.read_text(encoding="utf-8"))
        fleet_id = str(fleet["fleet_id"])
        bdk_id = bytes.fromhex(fleet["bdk_id"])
        key_type = KeyType.from_label(fleet["key_type"])
        devices = {str(k): InitialKeyId.from_hex(v) for k, v in fleet["devices"].items()}
        ocmf_keys = {
            str(k): bytes.fromhex(v).hex().upper() for k, v in fleet.get("ocmf_keys", {}).items()
        }
    except FileNotFoundError:
        raise KeyMaterialError(f"{fleet_path}: fleet file missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, KeyMaterialError) as exc:
        raise KeyMaterialError(f"{fleet_path}: malformed fleet file: {exc}") from None
    if len(bdk_id) != BDK_ID_LENGTH or KeyType.for_key(bdk) is not key_type:
        raise KeyMaterialError(f"{fleet_path}: BDK ID or key type does not match {BDK_FILE}")
    return GatewayKeys(
        fleet_id=fleet_id,
        bdk_id=bdk_id,
        key_type=key_type,
        bdk=bdk,
        token_key=TokenKey(secret=token),
        devices=devices,
        ocmf_keys=ocmf_keys,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionedFleet:
    """Where `provision_fleet` wrote a fleet's keys, and the identifiers it chose."""

    fleet_id: str
    bdk_id: str
    key_type: KeyType
    gateway_dir: Path
    device_dirs: Mapping[str, Path]
    initial_key_ids: Mapping[str, str]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_secret(path: Path, content: str) -> None:
    """Create a 0600 file, refusing to replace one (keys are never silently overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise KeyMaterialError(f"{path}: already exists; refusing to overwrite a key") from None
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added; be explicit
        os.write(fd, content.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise KeyMaterialError(f"{path}: already exists; refusing to overwrite keys") from None
    path.chmod(0o700)


def check_device_names(devices: Sequence[str]) -> None:
    """ConfigError unless `devices` are one or more distinct device names (they become
    directory names and certificate common names: [A-Za-z0-9._-], 1-64, no leading dot)."""
    if not devices:
        raise ConfigError("device", "provision at least one device")
    for name in devices:
        if not _DEVICE_NAME.fullmatch(name):
            raise ConfigError("device", f"{name!r} is not a device name ([A-Za-z0-9._-], 1-64)")
    if len(set(devices)) != len(devices):
        raise ConfigError("device", "device names repeat")
    if len(devices) > _MAX_DERIVATION_ID:
        raise ConfigError("device", "more devices than derivation IDs")


def write_device_keys(device_dir: Path, *, bdk: bytes, ikid: InitialKeyId, token_key: bytes) -> str:
    """Create one device's key directory (refusing an existing one): the fleet token key,
    its DUKPT Initial Key derived from the BDK (X9.24-3-2017 "Derive Initial Key") and
    loaded at once into its future-key registers (counter 1 next; the IK itself is written
    nowhere), and a fresh OCMF reading key with its pagination counter at 0. Returns the
    OCMF public key (hex DER SubjectPublicKeyInfo) for the gateway's fleet file."""
    _make_private_dir(device_dir)
    _write_secret(device_dir / TOKEN_KEY_FILE, token_key.hex().upper() + "\n")
    _write_secret(device_dir / INITIAL_KEY_ID_FILE, ikid.hex() + "\n")
    FileRegisterStore(device_dir / REGISTERS_FILE).save(
        FutureKeys.load_initial_key(derive_initial_key(bdk, ikid), ikid), exclusive=True
    )
    signing_key = ec.generate_private_key(ec.SECP256R1())
    # The counter first: a key without its counter is refused, never restarted at 0.
    write_counter_file(device_dir / OCMF_PAGINATION_FILE, 0, exclusive=True)
    pem = signing_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_secret(device_dir / OCMF_KEY_FILE, pem.decode("ascii"))
    public = signing_key.public_key()
    _write_secret(
        device_dir / OCMF_PUBLIC_KEY_FILE,
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
    )
    _fsync_dir(device_dir)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der.hex().upper()


def provision_fleet(
    out_dir: Path,
    *,
    fleet_id: str,
    devices: Sequence[str],
    key_type: KeyType = KeyType.AES128,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> ProvisionedFleet:
    """Write a simulated fleet's keys: a gateway dir and one key dir per device.

    A fresh BDK, BDK ID and fleet token key are drawn from `random_bytes`; device *n*
    (in the order given, from 1) gets derivation ID *n* and its keys (`write_device_keys`).
    Directories are 0700, files 0600; nothing existing is overwritten (re-provisioning a
    device over its registers would make it reuse KSNs). `fleet.add_devices` adds more.
    Layout: ``out_dir/gateway/`` and ``out_dir/devices/<name>/``.
    """
    if not fleet_id.strip():
        raise ConfigError("fleet", "the fleet id is empty")
    check_device_names(devices)

    bdk = random_bytes(key_type.length)
    bdk_id = random_bytes(BDK_ID_LENGTH)
    token_key = random_bytes(TOKEN_KEY_LENGTH)
    if (
        len(bdk) != key_type.length
        or len(bdk_id) != BDK_ID_LENGTH
        or len(token_key) != TOKEN_KEY_LENGTH
    ):
        raise KeyMaterialError("the random source returned the wrong number of bytes")

    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    gateway_dir = out_dir / GATEWAY_DIR
    devices_root = out_dir / DEVICES_DIR
    _make_private_dir(gateway_dir)
    if not devices_root.exists():
        _make_private_dir(devices_root)

    initial_key_ids: dict[str, str] = {}
    ocmf_keys: dict[str, str] = {}
    device_dirs: dict[str, Path] = {}
    for number, name in enumerate(devices, start=1):
        ikid = InitialKeyId(bdk_id=bdk_id, derivation_id=number.to_bytes(4, "big"))
        device_dir = devices_root / name
        ocmf_keys[name] = write_device_keys(device_dir, bdk=bdk, ikid=ikid, token_key=token_key)
        initial_key_ids[name] = ikid.hex()
        device_dirs[name] = device_dir

    _write_secret(gateway_dir / BDK_FILE, bdk.hex().upper() + "\n")
    _write_secret(gateway_dir / TOKEN_KEY_FILE, token_key.hex().upper() + "\n")
    fleet = {
        "fleet_id": fleet_id,
        "bdk_id": bdk_id.hex().upper(),
        "key_type": key_type.label,
        "devices": initial_key_ids,
        "ocmf_keys": ocmf_keys,
        "revoked": {},
    }
    _write_secret(gateway_dir / FLEET_FILE, json.dumps(fleet, indent=2, sort_keys=True) + "\n")
    _fsync_dir(gateway_dir)
    _fsync_dir(devices_root)
    return ProvisionedFleet(
        fleet_id=fleet_id,
        bdk_id=bdk_id.hex().upper(),
        key_type=key_type,
        gateway_dir=gateway_dir,
        device_dirs=device_dirs,
        initial_key_ids=initial_key_ids,
    )
