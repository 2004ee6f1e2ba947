"""The kiosk's own client certificate (security profile 3), renewed through the CSMS (A02,
A03).

The CSMS asks with TriggerMessage `SignChargingStationCertificate` (A02), or the kiosk asks by
itself `[ocpp] renew_before` its certificate expires (A03, `client.py`). The kiosk makes a new key
pair (ECDSA P-256, at least the strength OCPP 2.1 A00.FR.5xx asks of a station key) and a
PKCS#10 request whose subject common name is the station id (what the CSMS checks against the
connection's identity), and sends it in SignCertificate. The new private key waits beside the
current one in `<key_file>.pending` (mode 0600) until the CSMS's CA answers with
CertificateSigned. The chain is accepted only if its first certificate is for the pending key,
names this station, is valid on the kiosk's clock and, when the chain carries its issuer, was
signed by it; then the chain replaces `cert_file` and the key `key_file` (each written to a
temporary file, synced and renamed over the old one, so a power cut leaves the old pair or the
new one) and the next connection presents it. Anything else is Rejected with the reason, the
pending key stays for a corrected answer, and the kiosk reports a security event
`InvalidChargingStationCertificate` (A02.FR.xx).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("ev_terminal.ocpp")

CHARGING_STATION_CERTIFICATE = "ChargingStationCertificate"


class CertificateRefused(Exception):
    """A CertificateSigned chain the kiosk will not install; the message says why."""


@dataclass(frozen=True, slots=True)
class StationCertificate:
    """The files of the station's certificate: `cert_file` (PEM chain, leaf first) and
    `key_file` (PEM private key), both named by `[ocpp]`."""

    station_id: str
    cert_file: Path
    key_file: Path

    @property
    def pending_key_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".pending")

    def expires(self) -> datetime:
        """When the certificate in `cert_file` (its first, the station's) stops being valid;
        OSError or ValueError when the file cannot be read as a PEM certificate."""
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes()).not_valid_after_utc

    def request(self) -> str:
        """A new key pair, kept pending, and the PEM CSR for it."""
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(
            self.pending_key_file,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.station_id)])
        csr = (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def install(self, chain_pem: str, now: datetime) -> None:
        """Check the signed chain against the pending key and install both, or raise
        `CertificateRefused` and change nothing."""
        if not self.pending_key_file.exists():
            raise CertificateRefused("no certificate was requested")
        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))
        except ValueError as exc:
            raise CertificateRefused(f"not a PEM certificate chain: {exc}") from exc
        key_pem = self.pending_key_file.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
        leaf = chain[0]
        if leaf.public_key() != key.public_key():
            raise CertificateRefused("the certificate is not for the requested key")
        names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [self.station_id]:
            raise CertificateRefused(f"the certificate names {names}, not {self.station_id}")
        if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
            raise CertificateRefused("the certificate is not valid now")
        for child, issuer in pairwise(chain):
            try:
                child.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise CertificateRefused("the chain does not link up") from exc
        _write_private(self.key_file, key_pem)
        _write(self.cert_file, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
        self.pending_key_file.unlink()


class SigningSettings(Protocol):
    """SecurityCtrlr.CertSigningWaitMinimum (ms here) and CertSigningRepeatTimes."""

    cert_signing_wait_minimum_ms: int
    cert_signing_repeat_times: int


class RenewalSchedule:
    """A03: when the station asks for a new certificate by itself. Due once the certificate
    expires within `renew_before_ms`; asked again after CertSigningWaitMinimum without a
    CertificateSigned, the wait doubled each time, at most CertSigningRepeatTimes more times
    (A02.FR.xx); then not again until the file holds a certificate that is not due (an
    installed renewal, or one the operator put there). The expiry is read from the file at
    most once a minute. Used by the OCPP thread only."""

    def __init__(self) -> None:
        self.next_look: datetime | None = None
        self.asked = 0

    def reset(self) -> None:
        self.next_look = None
        self.asked = 0

    def due(
        self,
        certificate: StationCertificate,
        now: datetime,
        renew_before_ms: int,
        settings: SigningSettings,
    ) -> bool:
        if self.next_look is not None and now < self.next_look:
            return False
        try:
            expires = certificate.expires()
        except (OSError, ValueError) as exc:
            log.error("event=ocpp_certificate_unreadable error=%s", exc)
            self.next_look = now + timedelta(hours=1)
            return False
        if expires - now > timedelta(milliseconds=renew_before_ms):
            self.asked = 0
            self.next_look = now + timedelta(minutes=1)
            return False
        if self.asked > settings.cert_signing_repeat_times:
            self.next_look = now + timedelta(hours=1)
            return False
        wait_ms = settings.cert_signing_wait_minimum_ms * 2**self.asked
        self.asked += 1
        self.next_look = now + timedelta(milliseconds=wait_ms)
        log.info(
            "event=ocpp_certificate_renewal expires=%s attempt=%d", expires.isoformat(), self.asked
        )
        return True


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` atomically: a temporary file beside it, synced, renamed over it."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # a leftover temporary file keeps its old mode otherwise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_private(path: Path, data: bytes) -> None:
    _write(path, data, 0o600)
