"""Who is calling, behind a TLS-terminating reverse proxy: the forwarded client certificate.

In production nginx terminates TLS and asks each terminal for its certificate
(`deploy/nginx/ev-gateway.conf`); it forwards the certificate it verified in the
``X-SSL-Client-Cert`` header, as ``$ssl_client_escaped_cert`` (the PEM, URL-encoded), to the
gateway on 127.0.0.1. The header is a claim anyone can type, so the gateway believes it only
when the TCP peer is one of the configured trusted proxy addresses, and even then verifies the
certificate itself, as `gateway.tls` would in a handshake: signed directly by the fleet CA (the
CA has path length 0, so there is no chain to build), within its validity period and the CA's,
for client authentication when it says what it is for (RFC 5280 4.2.1.12), and not on the
fleet's CRL (`Revocations`: re-read when it changes, everything refused when it is unusable
or past its nextUpdate). A proxy misconfigured to pass on what the client sent, or a CA
certificate swapped on one side only, is then refused instead of trusted.

`ForwardedCertificates.identity` answers one of three things:

- the terminal id (the certificate subject's single common name): a terminal is calling;
- None: no identity was offered (no header, or a header from a peer that is not a trusted
  proxy, which is ignored and logged); terminal routes answer 401, public routes serve;
- a `Refusal`: a trusted proxy forwarded a certificate that does not pass; answer 403.

Why cryptography's `x509.verification` client verifier is not used: its web-PKI profile
requires a subjectAltName on client certificates, which the fleet's terminal certificates
(CN = terminal id, `terminal.protection.certs`) do not carry.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.tls import Revocations

log = logging.getLogger("ev_gateway.proxy_identity")

HEADER = "x-ssl-client-cert"  # what the nginx configuration sets; HTTP names are case-blind
MAX_HEADER_BYTES = 16 * 1024  # a P-256 certificate is under 1 KiB, URL-encoded under 2 KiB

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Refusal:
    """A forwarded certificate from a trusted proxy that does not pass, and why (a short
    code for the log and the 403 answer: malformed, unknown_issuer, expired, not_yet_valid,
    not_for_clients, no_common_name, revoked, crl_unusable, crl_expired, repeated)."""

    reason: str


Identity = str | Refusal | None


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Trusted proxy addresses from config ("127.0.0.1", "10.0.0.0/24", "::1"); ValueError
    names the value that is not an address or network."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return networks


class ForwardedCertificates:
    """Terminal identities from certificates forwarded by trusted proxies (thread-safe: the
    only mutable state is `Revocations`, which locks)."""

    def __init__(
        self,
        client_ca: Path,
        crl_file: Path | None,
        trusted_proxies: Iterable[IPNetwork],
        clock: Callable[[], datetime],
    ) -> None:
        self._cas = x509.load_pem_x509_certificates(client_ca.read_bytes())
        self._proxies = list(trusted_proxies)
        self._clock = clock
        self.revocations = Revocations(crl_file, client_ca, clock)

    def trusts(self, peer_ip: str) -> bool:
        """Whether the TCP peer is a configured trusted proxy."""
        try:
            address = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket names IPv4 peers ::ffff:a.b.c.d
        return any(address in network for network in self._proxies)

    def identity(self, peer_ip: str, headers: Mapping[str, str]) -> Identity:
        """Who the request comes from (see the module docstring). `headers` may be a plain
        dict or a multi-valued mapping whose items() lists each header line (Starlette's
        `Headers`); names are compared case-blind."""
        values = [v for k, v in headers.items() if k.lower() == HEADER and v]
        if not values:
            return None
        if not self.trusts(peer_ip):
            log.warning("event=forwarded_cert_ignored reason=untrusted_peer peer=%s", peer_ip)
            return None
        # nginx sends one (its proxy_set_header replaces the client's): two are a proxy that
        # passes client headers on, and which one is nginx's cannot be told.
        found = self._verify(values[0]) if len(values) == 1 else Refusal("repeated")
        if isinstance(found, Refusal):
            log.warning("event=forwarded_cert_refused reason=%s peer=%s", found.reason, peer_ip)
        return found

    def _verify(self, value: str) -> str | Refusal:
        if len(value) > MAX_HEADER_BYTES:
            return Refusal("malformed")
        try:
            cert = x509.load_pem_x509_certificate(unquote(value, errors="strict").encode("ascii"))
        except (ValueError, UnicodeError):
            return Refusal("malformed")
        ca = self._issuer(cert)
        if ca is None:
            return Refusal("unknown_issuer")
        now = self._clock()
        for checked in (cert, ca):
            if now < checked.not_valid_before_utc:
                return Refusal("not_yet_valid")
            if now > checked.not_valid_after_utc:
                return Refusal("expired")
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
            return Refusal("not_for_clients")
        why = self.revocations.refusal(cert.serial_number)
        if why is not None:
            return Refusal(why)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1 or not names[0].value:
            return Refusal("no_common_name")
        common_name = names[0].value
        return common_name if isinstance(common_name, str) else common_name.decode("utf-8")

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        for ca in self._cas:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None
