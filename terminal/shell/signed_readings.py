"""Signed meter readings: the terminal signs OCMF readings with its device key, because the
simulated meter (and the Modbus meters we drive) cannot sign.

The device key dir holds::

    ocmf-signing.key      the ECDSA P-256 private key (PKCS#8 PEM, mode 0600)
    ocmf-signing.pub.pem  its public key, for the operator and the gateway's verifier
    ocmf-pagination       the last reserved pagination counter (8 hex digits)

The pagination counter (OCMF "PG": "T<n>") never repeats, across restarts and crashes: the
next value is reserved durably before a reading carries it (`protection.counter`: a slot file
rewritten in place, so a full disk does not stop it). A crash may skip a number, never reuse
one. The key
and the counter are made together on first use; a key without its counter is refused rather
than start the counter again at 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from terminal import ocmf
from terminal.errors import KeyMaterialError
from terminal.protection.counter import FileCounterStore, write_counter_file

log = logging.getLogger("ev_terminal.readings")

SIGNING_KEY_FILE = "ocmf-signing.key"
PUBLIC_KEY_FILE = "ocmf-signing.pub.pem"
PAGINATION_FILE = "ocmf-pagination"
GATEWAY_ID = "ev-terminal"
SOFTWARE_VERSION = "0.1.0"

TX = {"begin": "B", "charging": "C", "end": "E"}  # OCMF reading reasons


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterIdentity:
    """OCMF's MV, MM and MS: who made the meter, which model, which one."""

    vendor: str
    model: str
    serial: str


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    info = os.stat(path)
    if info.st_mode & 0o077:
        raise KeyMaterialError(f"{path}: key file is accessible by group or others; chmod 600")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError:
        raise KeyMaterialError(f"{path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyMaterialError(f"{path}: not an ECDSA P-256 key")
    return key


def ensure_signing_key(key_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The device's reading key; made, with its counter at 0, if the key dir has none."""
    key_path = key_dir / SIGNING_KEY_FILE
    counter_path = key_dir / PAGINATION_FILE
    if key_path.exists():
        if not counter_path.exists():
            raise KeyMaterialError(
                f"{counter_path}: pagination counter missing; refusing to restart it at 0"
            )
        return _load_key(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    write_counter_file(counter_path, 0, exclusive=True)
    tmp = key_path.with_name(f".{key_path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, key_path)
    (key_dir / PUBLIC_KEY_FILE).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    log.info("event=ocmf_key_created dir=%s", key_dir)
    return key


def public_key_der(key_dir: Path) -> bytes:
    """The device's reading public key (DER SubjectPublicKeyInfo), for verifiers."""
    pem = serialization.load_pem_public_key((key_dir / PUBLIC_KEY_FILE).read_bytes())
    return pem.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ReadingSigner:
    """Builds and signs one OCMF reading at a time (the daemon thread owns it)."""

    def __init__(
        self, key_dir: Path, *, terminal_id: str, charge_point: str, meter: MeterIdentity
    ) -> None:
        self.key = ensure_signing_key(key_dir)
        self.counter = FileCounterStore(key_dir / PAGINATION_FILE)
        self.terminal_id = terminal_id
        self.charge_point = charge_point
        self.meter = meter

    def store_ready(self) -> None:
        """Save the pagination counter again, reserving no number: KeyStateUnsaved while it
        cannot be written. The first call makes the slot file of a counter kept in the older
        format, so later saves need no new disk space (`protection/slots.py`)."""
        self.counter.save(self.counter.load())

    def sign(
        self, *, kind: str, register_wh: int, at: datetime, token: str, tariff_text: str
    ) -> str:
        """The OCMF string of one reading; the pagination number is reserved first
        (KeyStateUnsaved if it cannot be: then no number is used)."""
        number = self.counter.load() + 1
        self.counter.save(number)
        reading = ocmf.Reading(
            kind=TX[kind],
            register_wh=register_wh,
            at=at,
            pagination=number,
            gateway_id=GATEWAY_ID,
            gateway_serial=self.terminal_id,
            gateway_version=SOFTWARE_VERSION,
            meter_vendor=self.meter.vendor,
            meter_model=self.meter.model,
            meter_serial=self.meter.serial,
            identification=token,
            charge_point=self.charge_point,
            tariff_text=tariff_text,
        )
        return ocmf.sign(ocmf.payload(reading), self.key)
