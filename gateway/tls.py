"""Mutual TLS for the gateway: who a terminal is comes from its client certificate.

uvicorn terminates TLS with `ssl_cert_reqs=CERT_REQUIRED` and the fleet's client CA
(`ssl_ca_certs`), so OpenSSL refuses a terminal with no certificate, an expired one, or one
issued by another CA during the handshake.

Revocation is checked per connection, right after the handshake and before a byte of the
request is read: the peer certificate's serial number against the CRL file (PEM, RFC 5280),
which is read again whenever it changes on disk, so revoking a terminal needs no restart. The
CRL must be signed by the client CA and be current (before its nextUpdate); otherwise every
terminal is refused (fail closed) until the operator installs a fresh one. A refused connection
is aborted, which a terminal sees as a dropped connection: "no answer", never an answer.

A CRL that lapses locks the whole fleet out, so `crl_expiry_check` reports how long the CRL
has left and logs a warning once it is within a margin (`CRL_WARNING_MARGIN`, 7 days) of its
nextUpdate: time for the operator to run `ev-terminal provision --out DIR --renew-crl`.
It runs when the server options are built and, while terminals connect, at most once an hour
(`Revocations.refusal`).

The certificate reaches the app as the ASGI TLS extension (`scope["extensions"]["tls"]`,
`client_cert_chain` in PEM); `client_identity` reads the terminal id from its subject's
common name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("ev_gateway.tls")

# A week: long enough for an operator to notice the warning and re-sign the CRL by hand,
# short enough against the fleet's 30-day CRL period (`certs.CRL_DAYS`) not to cry wolf.
CRL_WARNING_MARGIN = timedelta(days=7)
# How often a serving gateway repeats that check: a reminder an hour is visible in the journal
# without drowning it.
CRL_CHECK_INTERVAL = timedelta(hours=1)

ASGIApp = Callable[..., Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTLS:
    """The gateway's certificate and key, the CA that issues terminal certificates, and the
    CRL file of revoked terminal certificates (None: no revocation list)."""

    certfile: Path
    keyfile: Path
    client_ca: Path
    crl_file: Path | None = None


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A CRL as checked per connection. The revoked serials are a set made once per load: a
    look-up in the CRL object walks its entries (bench/bench_proxy_identity.py measured
    +60 us a request at 1,000 entries)."""

    next_update: datetime | None
    revoked: frozenset[int]

    @classmethod
    def of(cls, crl: x509.CertificateRevocationList) -> _Loaded:
        return cls(crl.next_update_utc, frozenset(r.serial_number for r in crl))


class Revocations:
    """The CRL file, re-read when its modification time or size changes (thread-safe)."""

    def __init__(
        self,
        crl_file: Path | None,
        client_ca: Path,
        clock: Callable[[], datetime],
        *,
        warning_margin: timedelta = CRL_WARNING_MARGIN,
    ):
        self.crl_file = crl_file
        self.clock = clock
        self.warning_margin = warning_margin
        self._next_expiry_check: datetime | None = None
        cas = x509.load_pem_x509_certificates(client_ca.read_bytes())
        self._issuers = [c.public_key() for c in cas]
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._loaded: _Loaded | None = None

    def _current(self) -> _Loaded | None:
        assert self.crl_file is not None
        try:
            info = os.stat(self.crl_file)
        except OSError:
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    crl = x509.load_pem_x509_crl(self.crl_file.read_bytes())
                except (OSError, ValueError):
                    crl = None
                usable = crl is not None and self._signed(crl)
                self._loaded = _Loaded.of(crl) if crl is not None and usable else None
                self._stamp = stamp
                log.info("event=crl_loaded ok=%s", self._loaded is not None)
            return self._loaded

    def _signed(self, crl: x509.CertificateRevocationList) -> bool:
        for key in self._issuers:
            if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
                try:
                    if crl.is_signature_valid(key):
                        return True
                except (TypeError, ValueError):
                    continue
        return False

    def time_left(self) -> timedelta | None:
        """How long until the CRL's nextUpdate (negative once it has passed); None when no CRL
        file is configured. `CrlUnusable` when the file is missing, unreadable, not signed by
        the client CA, or has no nextUpdate (RFC 5280 5.1.2.5 requires one)."""
        if self.crl_file is None:
            return None
        loaded = self._current()
        if loaded is None or loaded.next_update is None:
            raise CrlUnusable(f"{self.crl_file}: no usable CRL signed by the client CA")
        return loaded.next_update - self.clock()

    def refusal(self, serial: int) -> str | None:
        """Why a certificate with this serial is refused now, or None if it is not. At most
        once per `CRL_CHECK_INTERVAL` it also runs `crl_expiry_check`, so a gateway serving
        terminals keeps warning while the CRL nears its nextUpdate."""
        if self.crl_file is None:
            return None
        now = self.clock()
        with self._lock:
            due = self._next_expiry_check is None or now >= self._next_expiry_check
            if due:
                self._next_expiry_check = now + CRL_CHECK_INTERVAL
        if due:
            crl_expiry_check(self, self.warning_margin)
        loaded = self._current()
        if loaded is None:
            return "crl_unusable"
        if loaded.next_update is not None and self.clock() > loaded.next_update:
            return "crl_expired"
        if serial in loaded.revoked:
            return "revoked"
        return None


class CrlUnusable(ValueError):
    """The CRL file is missing, unreadable, not signed by the client CA or has no nextUpdate."""


def crl_expiry_check(
    revocations: Revocations, margin: timedelta = CRL_WARNING_MARGIN
) -> timedelta | None:
    """How long the CRL has left (None: no CRL configured), logged for the operator.

    Within `margin` of nextUpdate it logs a warning (``event=crl_expiring``); past it, or with
    no usable CRL, an error (``event=crl_expired`` / ``event=crl_unusable``), because then
    every terminal is refused. An unusable CRL returns ``timedelta(0)``: nothing is left."""
    try:
        left = revocations.time_left()
    except CrlUnusable as exc:
        log.error("event=crl_unusable problem=%r", str(exc))
        return timedelta(0)
    if left is None:
        return None
    hours = int(left.total_seconds() // 3600)
    if left <= timedelta(0):
        log.error("event=crl_expired hours_ago=%d file=%s", -hours, revocations.crl_file)
    elif left <= margin:
        log.warning(
            "event=crl_expiring hours_left=%d file=%s action=renew_crl",
            hours,
            revocations.crl_file,
        )
    return left


def _peer(transport: asyncio.BaseTransport) -> x509.Certificate | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def protocol_class(revocations: Revocations) -> type[H11Protocol]:
    """uvicorn's h11 protocol, refusing revoked peers and passing the certificate on."""

    class ClientCertProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            cert = _peer(transport)
            why = "no_certificate" if cert is None else revocations.refusal(cert.serial_number)
            if why is not None or cert is None:
                log.warning("event=client_refused reason=%s peer=%s", why, self.client)
                transport.abort()
                return
            pem = cert.public_bytes(Encoding.PEM).decode("ascii")
            tls = {
                "client_cert_chain": [pem],
                "client_cert_name": cert.subject.rfc4514_string(),
                "client_cert_error": None,
                "server_cert": None,
                "tls_version": None,
                "cipher_suite": None,
            }
            app = self.app

            async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
                extensions = {**scope.get("extensions", {}), "tls": tls}
                await app({**scope, "extensions": extensions}, receive, send)

            self.app = with_tls

    return ClientCertProtocol


def uvicorn_options(
    tls: ServerTLS, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that serve with mutual TLS."""
    revocations = Revocations(tls.crl_file, tls.client_ca, clock)
    crl_expiry_check(revocations)

    def context(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        ctx = default()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    return {
        "ssl_certfile": str(tls.certfile),
        "ssl_keyfile": str(tls.keyfile),
        "ssl_ca_certs": str(tls.client_ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_context_factory": context,
        "http": protocol_class(revocations),
    }


def client_identity(scope: Mapping[str, Any]) -> str | None:
    """The terminal id (the client certificate subject's common name), or None when the
    request did not come over mutual TLS."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls or not tls.get("client_cert_chain"):
        return None
    cert = x509.load_pem_x509_certificate(tls["client_cert_chain"][0].encode("ascii"))
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8")
