"""The technician credential: a per-device PIN, stored as a slow hash, with a lock-out.

Hash: scrypt (RFC 7914) through `hashlib.scrypt`, N = 2**15, r = 8, p = 1 (32 MiB of memory
per try), a 16-byte random salt, a 32-byte result. scrypt's paper suggests N = 2**14 for
interactive logins (Percival 2009, section 7); one step more costs about 0.15 s on a desktop
and about 0.5 s on a Raspberry Pi 4 per try, which is the point. The parameters are written in
the file with the hash, so raising them later needs no format change. The file is JSON, mode
0600, written atomically (temp file, fsync, rename); a file that group or others can read is
refused, as key files are.

Lock-out: after `attempts` wrong PINs in a row the console refuses every PIN for
`lockout_s`, without trying the hash. The count and the end of the lock-out are kept in a
state file (wall-clock UTC, since the monotonic clock restarts with the board), so a reboot
does not reset them. A wall clock that went backwards never shortens a lock-out below its
full length from now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from terminal.errors import ConfigError, KeyMaterialError

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 128 * 1024 * 1024  # hashlib's default (32 MiB) is just below N=2**15, r=8
MIN_PIN = 6
MAX_PIN = 64
PIN_FILE_NAME = "technician-pin"
LOCKOUT_FILE_NAME = "console-lockout.json"


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=HASH_BYTES
    )


def check_pin_policy(pin: str) -> None:
    """A PIN is 6 to 64 printable ASCII characters."""
    if not MIN_PIN <= len(pin) <= MAX_PIN or not all(0x20 < ord(c) < 0x7F for c in pin):
        raise ConfigError(
            "technician PIN", f"must be {MIN_PIN} to {MAX_PIN} printable characters, no spaces"
        )


def _write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically: a temp file beside it, fsync, rename, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_private(path: Path) -> dict[str, Any] | None:
    """A JSON file only its owner can read; None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyMaterialError(f"{path}: unreadable: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise KeyMaterialError(f"{path}: accessible by group or others (mode {mode:04o})")
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise KeyMaterialError(f"{path}: not a JSON object") from None
    if not isinstance(data, dict):
        raise KeyMaterialError(f"{path}: not a JSON object")
    return data


def set_pin(path: Path, pin: str) -> None:
    """Hash `pin` and store it (replacing an earlier PIN)."""
    check_pin_policy(pin)
    salt = secrets.token_bytes(SALT_BYTES)
    record = {
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "hash": _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex(),
    }
    _write_private(path, json.dumps(record, sort_keys=True) + "\n")


class PinFile:
    """Verifies a PIN against the stored hash (read at every try, so a new PIN takes effect
    without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()

    def verify(self, pin: str) -> bool:
        record = _read_private(self.path)
        if record is None:
            return False
        try:
            if record["kdf"] != "scrypt":
                raise KeyMaterialError(f"{self.path}: unknown kdf {record['kdf']!r}")
            salt = bytes.fromhex(record["salt"])
            expected = bytes.fromhex(record["hash"])
            n, r, p = int(record["n"]), int(record["r"]), int(record["p"])
        except (KeyError, TypeError, ValueError):
            raise KeyMaterialError(f"{self.path}: malformed technician PIN file") from None
        return hmac.compare_digest(_scrypt(pin, salt, n, r, p), expected)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    attempts: int = 5
    lockout_s: int = 15 * 60


class Lockout:
    """Consecutive failures and the end of a lock-out, persisted across restarts."""

    def __init__(self, path: Path, policy: LockoutPolicy) -> None:
        self.path = path
        self.policy = policy

    def _load(self) -> tuple[int, datetime | None]:
        try:
            data = _read_private(self.path) or {}
            until = data.get("locked_until")
            return int(data.get("failures", 0)), datetime.fromisoformat(until) if until else None
        except (KeyMaterialError, TypeError, ValueError):
            # A damaged state file must not unlock the console: treat it as a lock-out.
            return self.policy.attempts, None

    def _save(self, failures: int, until: datetime | None) -> None:
        state = {"failures": failures, "locked_until": until.isoformat() if until else None}
        _write_private(self.path, json.dumps(state, sort_keys=True) + "\n")

    def remaining_s(self, now: datetime) -> int:
        """Seconds left in a lock-out, 0 if none."""
        failures, until = self._load()
        if until is None:
            if failures >= self.policy.attempts:  # damaged state: lock from now
                self._save(failures, now + timedelta(seconds=self.policy.lockout_s))
                return self.policy.lockout_s
            return 0
        left = (until - now).total_seconds()
        if left <= 0:
            self._save(0, None)
            return 0
        if left > self.policy.lockout_s:  # the clock went back: never longer than a full one
            until = now + timedelta(seconds=self.policy.lockout_s)
            self._save(failures, until)
            left = self.policy.lockout_s
        return max(1, int(left))

    def failed(self, now: datetime) -> int:
        """Count a wrong PIN; returns the attempts left (0: locked out from now)."""
        failures, _ = self._load()
        failures += 1
        if failures >= self.policy.attempts:
            self._save(failures, now + timedelta(seconds=self.policy.lockout_s))
            return 0
        self._save(failures, None)
        return self.policy.attempts - failures

    def succeeded(self) -> None:
        failures, until = self._load()
        if failures or until:
            self._save(0, None)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
