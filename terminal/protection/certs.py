"""X.509 for mutual TLS between the terminals and the gateway: a fleet CA, the gateway's server
certificate, one client certificate per terminal, and the CRL of revoked terminals.

A terminal's certificate names it: the subject's common name is its terminal id
(`[station] id`), which the gateway records instead of trusting the request body. Keys are
ECDSA P-256, written as unencrypted PKCS#8 PEM with mode 0600 (the config names the files).

For a simulated fleet, `provision_tls` writes::

    ca/tls-ca.key                   the fleet CA's key (keep it offline in production)
    gateway/tls-ca.pem              the CA certificate (trust anchor for client certificates)
    gateway/tls-server.pem, .key    the gateway's certificate (its host names as SANs)
    gateway/tls-crl.pem             the CRL, empty at first (`revoke` adds serial numbers,
                                    `resign_crl` renews it before its nextUpdate)
    devices/NAME/tls-client.pem, .key   the terminal's certificate, CN = NAME
    devices/NAME/tls-ca.pem         the CA the terminal pins for the gateway
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
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
    ca: Issued,
    revoked: Iterable[int] | Mapping[int, datetime],
    *,
    now: datetime | None = None,
    days: int = CRL_DAYS,
    number: int = 1,
) -> bytes:
    """A CRL (PEM) signed by `ca` listing the `revoked` serial numbers (with their revocation
    dates when given as a mapping, else revoked now), CRL number `number` (RFC 5280 5.2.3:
    it only ever increases)."""
    ca_cert, ca_key = ca
    start = now or datetime.now(UTC)
    dates = (
        dict(revoked)
        if isinstance(revoked, Mapping)
        else dict.fromkeys(revoked, start - timedelta(minutes=5))
    )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start - timedelta(minutes=5))
        .next_update(start + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, when in sorted(dates.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
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
        if not (device / CLIENT_CERT_FILE).exists():
            issue_client(root, ca, name)


def has_ca(root: Path) -> bool:
    """Whether the fleet under `root` has a TLS CA (`provision_tls` ran)."""
    return (root / "ca" / CA_KEY_FILE).exists()


def issue_client(root: Path, ca: Issued, device: str) -> x509.Certificate:
    """Write a terminal's client certificate and key (CN = `device`) and the CA it pins
    into its existing device directory; an existing certificate is never replaced."""
    directory = root / "devices" / device
    if (directory / CLIENT_CERT_FILE).exists():
        raise FileExistsError(f"{directory / CLIENT_CERT_FILE}: already exists")
    cert, key = issue_leaf(ca, device)
    write_key(directory / CLIENT_KEY_FILE, key)
    write_cert(directory / CA_FILE, ca[0])
    write_cert(directory / CLIENT_CERT_FILE, cert)  # last: its presence means "issued"
    return cert


def client_serial(root: Path, device: str) -> int | None:
    """The serial number of a device's client certificate, None if it has none."""
    path = root / "devices" / device / CLIENT_CERT_FILE
    if not path.exists():
        return None
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def resign_crl(
    root: Path, *, add: Iterable[int] = (), now: datetime | None = None, days: int = CRL_DAYS
) -> x509.CertificateRevocationList:
    """Re-sign the fleet's CRL with a new nextUpdate (`days` from `now`) and the next CRL
    number, keeping every revoked entry with its revocation date and adding the serials in
    `add` (revoked now). Only the CRL file changes, atomically. ValueError when the current
    CRL is unreadable or not signed by the fleet CA (it is not carried over blindly)."""
    ca = load_ca(root)
    start = now or datetime.now(UTC)
    path = root / "gateway" / CRL_FILE
    current = x509.load_pem_x509_crl(path.read_bytes())
    public = ca[1].public_key()
    if current.issuer != ca[0].subject or not current.is_signature_valid(public):
        raise ValueError(f"{path}: not signed by the fleet CA; refusing to re-sign it")
    dates = {r.serial_number: r.revocation_date_utc for r in current}
    for serial in add:
        dates.setdefault(serial, start)
    try:
        number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    pem = crl(ca, dates, now=start, days=days, number=number + 1)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)  # atomic: the gateway and nginx never read half a CRL
    return x509.load_pem_x509_crl(pem)


def revoke(root: Path, device: str) -> int:
    """Add a device's certificate to the fleet's CRL; returns its serial number."""
    serial = client_serial(root, device)
    if serial is None:
        raise FileNotFoundError(f"{root / 'devices' / device / CLIENT_CERT_FILE}: missing")
    resign_crl(root, add=[serial])
    return serial
