"""Who is calling a terminal route.

A terminal is who its client certificate says (subject CN = terminal id), however the
certificate arrived:
- **mutual TLS at the gateway** (`gateway.tls`): the handshake verified it, the ASGI TLS
  extension carries it;
- **behind a TLS-terminating reverse proxy**: the proxy forwards the certificate it verified,
  and the gateway believes it only from a configured trusted proxy address and only after
  verifying it itself against the fleet CA and CRL (`gateway.proxy_identity`).
Without either, a terminal route answers 401 — except in the explicit development mode
(`--insecure-dev`, bound to loopback, said loudly in the log), where the body's terminal id is
taken as sent. Public routes (a receipt by its unguessable id) need no identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from gateway.tls import client_identity

DEV_CALLER = "-"  # the idempotency scope of unauthenticated development requests


class Forwarded(Protocol):
    def identity(self, peer_ip: str, headers: Mapping[str, str]) -> object: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's caller: `terminal` is the certificate's terminal id, or None in the
    development mode. `refused` says why a forwarded certificate was refused."""

    terminal: str | None
    refused: str | None = None

    @property
    def scope(self) -> str:
        """The namespace of the caller's idempotency keys."""
        return self.terminal or DEV_CALLER


class Identity:
    """Finds the caller of a request (see the module docstring)."""

    def __init__(self, *, insecure_dev: bool = False, forwarded: Forwarded | None = None) -> None:
        self.insecure_dev = insecure_dev
        self.forwarded = forwarded

    def caller(self, request: Request) -> Caller | None:
        """The caller, or None when a terminal route must answer 401 (no identity offered)."""
        who = client_identity(request.scope)
        if who is not None:
            return Caller(who)
        if self.forwarded is not None:
            peer = request.client.host if request.client is not None else ""
            found = self.forwarded.identity(peer, request.headers)
            if isinstance(found, str):
                return Caller(found)
            if found is not None:
                return Caller(None, refused=str(getattr(found, "reason", "refused")))
        return Caller(None) if self.insecure_dev else None
