"""Adyen's side of the payments, for the conformance suite: Prism validates, this keeps books.

Stoplight Prism serving Adyen's OpenAPI document checks every request the adapter sends against
Adyen's own description, but it keeps no state: every `/payments` answer is the same example
with the same pspReference, and every modification is answered ``received`` with no
notification to follow. `AdyenBooks` sits in front of Prism. Each request goes to Prism first;
a request Prism refuses (``sl-violations``) is answered as Prism answered it. A valid one is
then answered as Adyen documents, from books kept here:
- ``POST /payments`` (https://docs.adyen.com/api-explorer/Checkout/71/post/payments): Prism's
  answer with a pspReference of this payment's own and the amount asked; a card whose holder
  name is a refusal reason is refused with it, as Adyen's test environment does
  (https://docs.adyen.com/development-resources/testing/result-codes): ``NOT_ENOUGH_BALANCE``
  gives the recorded refusal `recorded/adyen/payment_refused.json` (reason code 12).
- ``/captures``, ``/cancels``, ``/refunds``, ``/amountUpdates``: Prism's ``received`` answer
  with this modification's pspReference; the outcome follows as a signed notification
  (CAPTURE, CANCELLATION, REFUND, AUTHORISATION_ADJUSTMENT,
  https://docs.adyen.com/development-resources/webhooks/webhook-types) whose ``success`` is
  "false" when Adyen refuses the modification: a capture or refund of more than the payment
  has left ("Insufficient balance on payment"), a capture or an amount update of a payment
  cancelled or captured, a cancel of a captured one, a refund of one never captured.
- The same ``Idempotency-Key`` again gets the first answer and changes nothing
  (https://docs.adyen.com/development-resources/api-idempotency).
- With `cse_key` (the private half of the account's client-side encryption key pair, which
  only Adyen holds), a card's ``encrypted…`` fields made by Adyen's CSE library (the phone's
  page) are opened as Adyen opens them: RSA PKCS #1 v1.5 unwraps the AES-256 key, AES-CCM
  (12-byte nonce, 8-byte tag) the JSON of one field and its ``generationtime``. A field that
  does not open, a missing field, a generation time over a day old or a card number failing
  the Luhn check is refused as Adyen refuses it: 422, error code 174 "Unable to decrypt data"
  (https://docs.adyen.com/development-resources/error-codes). What was opened is kept in
  `opened`, by pspReference, for the test to compare with what the phone typed.
Notifications are signed with Adyen's HMAC scheme for standard notifications (`sign`); the
adapter verifies them with the Adyen SDK. Adyen publishes no payment status, so a payment's
state is read from its notifications (`notifications`).

This is a model of Adyen's documented behaviour written here, not Adyen: the suite's
assertions about refusals of modifications rest on it; what the adapter sends rests on Prism.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from tests.processors.peers import Exchange
from tests.processors.recorded import RECORDED

# The refusal reasons Adyen's test environment takes as the card holder's name, with the
# recorded answer each gives.
REFUSED_HOLDERS = {"NOT_ENOUGH_BALANCE": "adyen/payment_refused.json"}
MODIFICATION = re.compile(r"^/payments/([A-Z0-9]+)/(captures|cancels|refunds|amountUpdates)$")
EVENT_CODES = {
    "captures": "CAPTURE",
    "cancels": "CANCELLATION",
    "refunds": "REFUND",
    "amountUpdates": "AUTHORISATION_ADJUSTMENT",
}


CSE_FIELDS = {
    "encryptedCardNumber": "number",
    "encryptedExpiryMonth": "expiryMonth",
    "encryptedExpiryYear": "expiryYear",
    "encryptedSecurityCode": "cvc",
}
CSE_MAX_AGE = timedelta(hours=24)
UNDECRYPTABLE = {
    "status": 422,
    "errorCode": "174",
    "message": "Unable to decrypt data",
    "errorType": "validation",
}


def cse_key() -> rsa.RSAPrivateKey:
    """A client-side encryption key pair as an Adyen account has one (Adyen keeps the private
    half; the merchant's page gets `cse_public_key`)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def cse_public_key(key: rsa.RSAPrivateKey) -> str:
    """The public half as Adyen's Customer Area shows it: "10001|MODULUS" in hex."""
    numbers = key.public_key().public_numbers()
    return f"{numbers.e:X}|{numbers.n:X}"


def open_cse(value: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """One field as Adyen's CSE library sealed it: "adyenjs_V$" + RSA(AES key) + "$" +
    nonce ‖ AES-CCM(JSON), both Base64 (the library's `Encryption.prototype.encrypt`)."""
    prefix, wrapped, sealed = value.split("$")
    if not prefix.startswith("adyenjs_"):
        raise ValueError("not a CSE value")
    aes_key = key.decrypt(base64.b64decode(wrapped), padding.PKCS1v15())
    blob = base64.b64decode(sealed)
    try:
        opened = AESCCM(aes_key, tag_length=8).decrypt(blob[:12], blob[12:], None)
    except InvalidTag:
        # With the wrong RSA key, PKCS#1 v1.5's implicit rejection (OpenSSL 3.2 on) hands back
        # a synthetic AES key instead of failing: a 32-byte one then fails here.
        raise ValueError("the field does not open with this key") from None
    document = json.loads(opened)
    if not isinstance(document, dict):
        raise ValueError("not a CSE document")
    return document


def _luhn(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return number.isdigit() and 12 <= len(number) <= 19 and total % 10 == 0


def sign(item: dict[str, Any], hmac_key: str) -> dict[str, Any]:
    """`item` with Adyen's HMAC signature for standard notifications
    (https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures): the values
    of pspReference, originalReference, merchantAccountCode, merchantReference, value,
    currency, eventCode and success joined by ':', HMAC-SHA256 under the hex-decoded key,
    Base64."""
    signed = ":".join(
        str(v)
        for v in (
            item["pspReference"],
            item.get("originalReference", ""),
            item["merchantAccountCode"],
            item["merchantReference"],
            item["amount"]["value"],
            item["amount"]["currency"],
            item["eventCode"],
            item["success"],
        )
    )
    mac = hmac.new(binascii.unhexlify(hmac_key), signed.encode(), hashlib.sha256).digest()
    return {**item, "additionalData": {"hmacSignature": base64.b64encode(mac).decode()}}


@dataclass
class _Payment:
    reference: str  # the merchant reference: the gateway's payment id
    currency: str
    authorised: int
    captured: int = 0
    refunded: int = 0
    cancelled: bool = False


@dataclass
class AdyenBooks:
    """A proxy on 127.0.0.1 in front of Prism that answers as Adyen would, from its books."""

    prism: str
    hmac_key: str
    account: str
    exchanges: list[Exchange] = field(default_factory=list)
    cse_key: rsa.RSAPrivateKey | None = None
    opened: dict[str, dict[str, str]] = field(default_factory=dict)
    _payments: dict[str, _Payment] = field(default_factory=dict)
    _notices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def notifications(self, psp: str) -> list[bytes]:
        """The notification documents Adyen sent about the payment `psp`, oldest first."""
        with self._lock:
            items = list(self._notices.get(psp, []))
        return [
            json.dumps(
                {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
            ).encode()
            for item in items
        ]

    def _psp(self) -> str:
        # Adyen's pspReferences are 16 characters of digits and capitals.
        return f"EVT{next(self._ids):013d}"

    def _notify(
        self, psp: str, code: str, own: str, amount: dict[str, Any], *, ok: bool, reason: str
    ) -> None:
        payment = self._payments.get(psp)
        item = {
            "amount": amount,
            "eventCode": code,
            "eventDate": "2026-11-30T10:00:00+01:00",
            "merchantAccountCode": self.account,
            "merchantReference": payment.reference if payment else "",
            "pspReference": own,
            "reason": reason,
            "success": "true" if ok else "false",
        }
        if own != psp:
            item["originalReference"] = psp
        self._notices.setdefault(psp, []).append(sign(item, self.hmac_key))

    def _open_card(self, method: dict[str, Any]) -> dict[str, str] | None:
        """The card the CSE fields carry, or None when Adyen could not open them."""
        assert self.cse_key is not None
        card: dict[str, str] = {}
        try:
            for name, inside in CSE_FIELDS.items():
                document = open_cse(str(method[name]), self.cse_key)
                made = datetime.fromisoformat(str(document["generationtime"]))
                if abs(datetime.now(UTC) - made) > CSE_MAX_AGE:
                    return None
                card[inside] = str(document[inside])
        except (KeyError, ValueError, TypeError):
            return None
        return card if _luhn(card["number"]) else None

    def _pay(self, request: dict[str, Any], answer: dict[str, Any]) -> tuple[int, bytes]:
        method = request.get("paymentMethod", {})
        card: dict[str, str] | None = None
        if self.cse_key is not None and str(method.get("encryptedCardNumber", "")).startswith(
            "adyenjs_"
        ):
            card = self._open_card(method)
            if card is None:
                return 422, json.dumps(UNDECRYPTABLE).encode()
        psp = self._psp()
        if card is not None:
            self.opened[psp] = card
        holder = str(request.get("paymentMethod", {}).get("holderName", ""))
        amount = request["amount"]
        if holder in REFUSED_HOLDERS:
            refused = json.loads((RECORDED / REFUSED_HOLDERS[holder]).read_text())
            refused.update(pspReference=psp, merchantReference=request["reference"])
            return 200, json.dumps(refused).encode()
        self._payments[psp] = _Payment(
            reference=str(request["reference"]),
            currency=str(amount["currency"]),
            authorised=int(amount["value"]),
        )
        answer.update(
            pspReference=psp,
            resultCode="Authorised",
            amount=amount,
            merchantReference=request["reference"],
        )
        answer.pop("action", None)
        self._notify(psp, "AUTHORISATION", psp, amount, ok=True, reason="")
        return 200, json.dumps(answer).encode()

    def _modify(
        self, psp: str, kind: str, request: dict[str, Any], answer: dict[str, Any]
    ) -> tuple[int, bytes]:
        own = self._psp()
        payment = self._payments.get(psp)
        amount = request.get("amount") or {
            "currency": payment.currency if payment else "EUR",
            "value": payment.authorised if payment else 0,
        }
        value = int(amount["value"])
        ok, reason = True, ""
        if payment is None:
            ok, reason = False, "Original pspReference not found"
        elif kind == "captures":
            if payment.cancelled or payment.captured:
                ok, reason = False, "Payment not capturable: already settled"
            elif value > payment.authorised:
                ok, reason = False, "Insufficient balance on payment"
            else:
                payment.captured = value
        elif kind == "cancels":
            if payment.cancelled or payment.captured:
                ok, reason = False, "Payment not cancellable: already settled"
            else:
                payment.cancelled = True
        elif kind == "refunds":
            if not payment.captured:
                ok, reason = False, "Payment not refundable: not captured"
            elif payment.refunded + value > payment.captured:
                ok, reason = False, "Insufficient balance on payment"
            else:
                payment.refunded += value
        elif payment.cancelled or payment.captured:
            ok, reason = False, "Payment not adjustable: already settled"
        else:
            payment.authorised = value
        self._notify(psp, EVENT_CODES[kind], own, amount, ok=ok, reason=reason)
        answer.update(pspReference=own, paymentPspReference=psp, status="received")
        return 201, json.dumps(answer).encode()

    def _answer(self, path: str, body: bytes, status: int, prism: bytes) -> tuple[int, bytes]:
        request = json.loads(body) if body else {}
        answer = json.loads(prism) if prism else {}
        if path == "/payments":
            return self._pay(request, answer)
        found = MODIFICATION.match(path)
        if found is None:
            return status, prism
        return self._modify(found.group(1), found.group(2), request, answer)

    def start(self) -> AdyenBooks:
        target = urlsplit(self.prism)
        books = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # one segment per answer (see peers.RecordingProxy)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
                try:
                    conn.request("POST", self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    status, answer_headers = answer.status, dict(answer.getheaders())
                finally:
                    conn.close()
                violations = "sl-violations" in {k.lower() for k in answer_headers}
                key = headers.get("Idempotency-Key") or headers.get("idempotency-key")
                with books._lock:
                    if violations or status >= 300:
                        out = (status, data)
                    elif key and key in books._answers:
                        out = books._answers[key]
                    else:
                        out = books._answer(self.path, body, status, data)
                        if key:
                            books._answers[key] = out
                    books.exchanges.append(
                        Exchange(
                            "POST",
                            self.path,
                            dict(self.headers),
                            body,
                            out[0],
                            answer_headers,
                            out[1],
                            0.0,
                        )
                    )
                self.send_response(out[0])
                self.send_header("Content-Type", "application/json")
                if violations:
                    self.send_header("sl-violations", answer_headers.get("sl-violations", ""))
                self.send_header("Content-Length", str(len(out[1])))
                self.end_headers()
                self.wfile.write(out[1])

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
