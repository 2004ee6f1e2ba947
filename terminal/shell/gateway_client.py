"""The gateway client: JSON over HTTP(S) with an Idempotency-Key, answers parsed strictly.

Only a well-formed, schema-valid approval is an approval. A timeout, a connection error, a 5xx,
a malformed body, or an answer about a different authorization is "no answer" (`UplinkError`);
a 4xx is a definite refusal (`GatewayRefused`). The sender (`sender.py`) drains the outbox
through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from terminal.core.events import AuthOutcome
from terminal.errors import GatewayRefused, UplinkError
from terminal.money import MINOR_UNITS, Money


class GatewayClient:
    """POSTs JSON to the gateway with an Idempotency-Key; parses strictly.

    Over https the gateway's certificate must chain to `ca_file` (pinned: the system's CAs
    are not trusted) and the terminal presents `cert_file`/`key_file`. A refused or failed
    handshake is a connection error: "no answer"."""

    def __init__(
        self,
        base_url: str,
        timeout_ms: int,
        session: requests.Session | None = None,
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_ms / 1000
        self.http = session or requests.Session()
        # Passed with every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE from the environment, and the pin must not.
        self.verify: str | bool = str(ca_file) if ca_file is not None else True
        self.cert = (
            (str(cert_file), str(key_file))
            if cert_file is not None and key_file is not None
            else None
        )

    def post(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(
                self.base_url + path,
                json=body,
                headers={"Idempotency-Key": key},
                timeout=(min(self.timeout_s, 5.0), self.timeout_s),
                verify=self.verify,
                cert=self.cert,
            )
        except requests.RequestException as exc:
            raise UplinkError(f"{type(exc).__name__}") from None
        if response.status_code >= 500:
            raise UplinkError(f"http {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise UplinkError("malformed body") from None
        if not isinstance(data, dict):
            raise UplinkError("malformed body")
        if 400 <= response.status_code < 500:
            error = data.get("error")
            if not isinstance(error, dict) or not isinstance(error.get("code"), str):
                raise UplinkError("malformed error body")
            if response.status_code == 409 and error["code"] == "in_progress":
                # Another step on the same authorization is under way at the gateway (or a
                # worker died in it): not a refusal, an answer to come. Retried like no answer.
                raise UplinkError("in progress")
            raise GatewayRefused(response.status_code, error["code"], str(error.get("message")))
        if response.status_code != 200:
            raise UplinkError(f"unexpected http {response.status_code}")
        return data

    def fork(self) -> GatewayClient:
        """Another client to the same gateway with the same credentials and a connection
        pool of its own (a `requests.Session` belongs to one thread)."""
        twin = GatewayClient(self.base_url, int(self.timeout_s * 1000))
        twin.verify, twin.cert = self.verify, self.cert
        return twin

    def close(self) -> None:
        self.http.close()

    def get_json(self, path: str, *, read_timeout_s: float) -> dict[str, Any]:
        """GET a JSON object (a long poll may take `read_timeout_s`). Any failure, a status
        other than 200 or a body that is not an object is UplinkError."""
        try:
            response = self.http.get(
                self.base_url + path,
                timeout=(min(self.timeout_s, 5.0), read_timeout_s),
                verify=self.verify,
                cert=self.cert,
            )
        except requests.RequestException as exc:
            raise UplinkError(f"{type(exc).__name__}") from None
        if response.status_code != 200:
            raise UplinkError(f"http {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise UplinkError("malformed body") from None
        if not isinstance(data, dict):
            raise UplinkError("malformed body")
        return data

    def get_if_changed(
        self, path: str, etag: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """GET with `If-None-Match`: (body, its ETag), or (None, etag) when unchanged (304).
        Any failure or a malformed body is UplinkError."""
        headers = {"If-None-Match": etag} if etag else {}
        try:
            response = self.http.get(
                self.base_url + path,
                headers=headers,
                timeout=(min(self.timeout_s, 5.0), self.timeout_s),
                verify=self.verify,
                cert=self.cert,
            )
        except requests.RequestException as exc:
            raise UplinkError(f"{type(exc).__name__}") from None
        if response.status_code == 304:
            return None, etag
        if response.status_code != 200:
            raise UplinkError(f"http {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise UplinkError("malformed body") from None
        if not isinstance(data, dict):
            raise UplinkError("malformed body")
        return data, response.headers.get("ETag")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAnswer:
    """An authorization outcome before the sender stamps it into an event."""

    outcome: AuthOutcome
    amount: Money | None = None
    reason: str = ""


def parse_authorization(
    data: dict[str, Any], authorization_id: str, currency: str
) -> AuthAnswer | None:
    """Turn an authorization answer into its outcome, strictly; None if it is not well-formed."""
    if data.get("authorization_id") != authorization_id:
        return None
    status = data.get("status")
    if status == "declined":
        reason = data.get("decline_reason")
        return AuthAnswer(outcome=AuthOutcome.DECLINED, reason=str(reason or "declined"))
    if status != "approved":
        return None
    amount = data.get("amount_authorized")
    if not isinstance(amount, dict) or set(amount) != {"minor", "currency"}:
        return None
    minor, cur = amount["minor"], amount["currency"]
    if not isinstance(minor, int) or isinstance(minor, bool) or minor <= 0:
        return None
    if cur != currency or cur not in MINOR_UNITS:
        return None
    return AuthAnswer(outcome=AuthOutcome.APPROVED, amount=Money(minor, cur))
