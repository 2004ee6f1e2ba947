"""X.509 for mutual TLS between the terminals and the gateway: a fleet CA, the gateway's server
certificate, one client certificate per terminal, and the CRL of revoked terminals.

A terminal's certificate names it: the subject's common name is its terminal id
(`[station] id`), which the gateway records instead of trusting the request body. Keys are
ECDSA P-256, written as unencrypted PKCS#8 PEM with mode 0600 (the config names the files).

For a simulated fleet, `provision_tls` writes::

    ca/tls-ca.key                   the fleet CA's key (keep it offline in production)
    gateway/tls-ca.pem              the CA certificate (trust anchor for client certificates)
    gateway/tls-server.pem, .key    the gateway's certificate (its host names as SANs)
    gateway/tls-crl.pem             the CRL, empty at first (`revoke` adds serial numbers)
    devices/NAME/tls-client.pem, .key   the terminal's certificate, CN = NAME
    devices/NAME/tls-ca.pem         the CA the terminal pins for the gateway
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY_FILE = "tls-ca.key"
CA_FILE = "tls-ca.pem"
SERVER_CERT_FILE = "tls-server.pem"
SERVER_KEY_FILE = "tls-server.key"
CRL_FILE = "tls-crl.pem"
CLIENT_CERT_FILE = "tls-client.pem"
CLIENT_KEY_FILE = "tls-client.key"

CA_DAYS = 10 * 365
LEAF_DAYS = 2 * 365
CRL_DAYS = 30  # the gateway refuses every terminal once the CRL is past its nextUpdate

Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_ca(fleet: str, *, now: datetime | None = None, days: int = CA_DAYS) -> Issued:
    """A self-signed fleet CA (path length 0: it signs only leaf certificates)."""
    start = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{fleet} terminal CA", fleet)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_leaf(
    ca: Issued,
    common_name: str,
    *,
    server_hosts: Sequence[str] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A leaf certificate signed by `ca`: a server certificate for `server_hosts` (DNS names
    or IP addresses) if any are given, else a terminal's client certificate."""
    ca_cert, ca_key = ca
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    end = not_after or start + timedelta(days=LEAF_DAYS)
    key = ec.generate_private_key(ec.SECP256R1())
    organization = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, str(organization)))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server_hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in server_hosts]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def crl(
    ca: Issued, revoked: Iterable[int], *, now: datetime | None = None, days: int = CRL_DAYS
) -> bytes:
    """A CRL (PEM) signed by `ca` listing the `revoked` serial numbers."""
    ca_cert, ca_key = ca
    start = now or datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start - timedelta(minutes=5))
        .next_update(start + timedelta(days=days))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(start - timedelta(minutes=5))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key readable by its owner only (created 0600, never wider)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def load_ca(root: Path) -> Issued:
    """The fleet CA written by `provision_tls` under `root`."""
    cert = x509.load_pem_x509_certificate((root / "gateway" / CA_FILE).read_bytes())
    key = serialization.load_pem_private_key((root / "ca" / CA_KEY_FILE).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def provision_tls(
    root: Path, *, fleet: str, devices: Sequence[str], server_hosts: Sequence[str]
) -> None:
    """Write a fleet's TLS files under `root` (see the module docstring). An existing CA is
    reused, so devices can be added later; existing device certificates are kept."""
    for sub in ("ca", "gateway", "devices"):
        (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    gateway = root / "gateway"
    if (root / "ca" / CA_KEY_FILE).exists():
        ca = load_ca(root)
    else:
        ca = issue_ca(fleet)
        write_key(root / "ca" / CA_KEY_FILE, ca[1])
        write_cert(gateway / CA_FILE, ca[0])
        (gateway / CRL_FILE).write_bytes(crl(ca, []))
        server, server_key = issue_leaf(ca, server_hosts[0], server_hosts=server_hosts)
        write_cert(gateway / SERVER_CERT_FILE, server)
        write_key(gateway / SERVER_KEY_FILE, server_key)
    for name in devices:
        device = root / "devices" / name
        device.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (device / CLIENT_CERT_FILE).exists():
            continue
        cert, key = issue_leaf(ca, name)
        write_cert(device / CLIENT_CERT_FILE, cert)
        write_key(device / CLIENT_KEY_FILE, key)
        write_cert(device / CA_FILE, ca[0])


def revoke(root: Path, device: str) -> int:
    """Add a device's certificate to the fleet's CRL; returns its serial number."""
    ca = load_ca(root)
    cert = x509.load_pem_x509_certificate(
        (root / "devices" / device / CLIENT_CERT_FILE).read_bytes()
    )
    path = root / "gateway" / CRL_FILE
    revoked = {r.serial_number for r in x509.load_pem_x509_crl(path.read_bytes())}
    revoked.add(cert.serial_number)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl(ca, sorted(revoked)))
    tmp.replace(path)  # atomic: the gateway never reads half a CRL
    return cert.serial_number
