"""Lightning (bitcoin), through an LNbits wallet's REST API: invoices priced in fiat.

Which path it serves: the web payment by phone. The driver pays a Lightning invoice from their
own wallet; no card is involved (`CardRef` of kind ``lightning``, `methods.LIGHTNING`).

A Lightning payment is made in full up front, so the port maps onto it as a prepayment:
- `hold` quotes the rate (a `RateSource`: BTC price in the session's currency, its source and
  time), converts the fiat amount to satoshis once (rounded up, so the operator never receives
  less than the fiat amount at the quoted rate) and creates an invoice whose ``extra`` records
  the fiat amount, the rate, its source and time, and the gateway's key. The answer is
  `Outcome.PENDING`: the invoice is paid or expires later.
- Paid status arrives two ways: LNbits calls the invoice's webhook, and `status` polls
  ``GET /api/v1/payments/{payment_hash}``. LNbits signs no webhook, so `parse_webhook` believes
  nothing in the body but the payment hash, and asks LNbits (with the wallet's key) whether
  that invoice of this wallet is paid.
- `capture` keeps part of a paid invoice: the money is already in the wallet, so the capture
  is recorded on the invoice at LNbits (its ``extra``, through ``PATCH
  /api/v1/payments/extra``, which only appends: the captured amount, the key, and the rest
  owed back to the driver), where `status` then reports it captured. `release` of an unpaid
  invoice lets it expire; of a paid one, it records all of it as owed back.
- Refunds (`Capability.REFUND_TO_DESTINATION`): the driver gives an invoice from their wallet
  (`refund`'s `destination`, or `pay_out`) and it is paid from the operator's wallet, for the
  satoshis that the refunded fiat amount bought at the rate recorded at payment time, never
  more in all than was captured, and the payout is recorded in LNbits (``extra`` and
  ``external_id`` of the outgoing payment), where `status` finds it. A `refund` without a
  destination answers `ErrorCode.UNSUPPORTED`.
- The change (`port.PaysChange`, rules in `lightning_change`): what a capture left, or all of
  a released paid invoice, is paid back to an invoice from the driver's wallet for exactly the
  satoshis paid less what the capture is worth at the payment's rate (``external_id``
  ``change:<payment hash>``, the gateway's key in ``extra``); `change_status` finds it by key.
  A refund's destination is checked by the same rules (network, expiry, exact satoshis, not
  paid already) before anything is paid.
- `increment` is unsupported: an invoice is for a fixed amount.
Idempotency: LNbits has no idempotency keys, so the adapter gives every invoice the gateway's
payment id as ``external_id`` and looks it up before creating one; a second `hold` with the same
key answers the first invoice (pending, then approved once paid, declined once expired unpaid).
Captures, releases and refunds are looked up by key the same way.
API: https://demo.lnbits.com/docs (LNbits 1.x, ``/api/v1/payments``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import requests

from gateway.processors import CardRef
from gateway.processors import lightning_answers as answers
from gateway.processors.lightning_change import (
    change_sats,
    check_invoice,
    clean,
    network_of,
    sats_for,
)
from gateway.processors.lightning_rates import RateSource, RateUnavailable
from gateway.processors.methods import LIGHTNING
from gateway.processors.port import (
    Capability,
    ChangeQuote,
    ChangeRefused,
    ErrorCode,
    PaymentState,
    PaymentStatus,
    ProcessorUnreachable,
    Result,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from terminal.money import Money

log = logging.getLogger("ev_gateway.processors.lightning")

# What an outgoing payment pays: a refund the operator gives, or a prepayment's change.
_PayoutKind = Literal["refund", "change"]


class LightningProcessor:
    """Implements `gateway.processors.port.Processor` for one LNbits wallet."""

    name = "lightning"

    def __init__(
        self,
        *,
        account: str,
        url: str,
        invoice_key: str,
        admin_key: str,
        rates: RateSource,
        webhook_url: str | None = None,
        expiry_s: int = 600,
        timeout_s: float = 10.0,
    ) -> None:
        self.account = account
        self.capabilities = frozenset(
            {
                Capability.PARTIAL_CAPTURE,
                Capability.REFUND_TO_DESTINATION,
                Capability.WEBHOOK,
                Capability.WEB,
                Capability.STATUS,
                Capability.PREPAID,
            }
        )
        self._url = url.rstrip("/")
        self._invoice_key = invoice_key
        self._admin_key = admin_key
        self._rates = rates
        self._webhook_url = webhook_url
        self._expiry_s = expiry_s
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"LightningProcessor(account={self.account!r})"

    # -- money calls -----------------------------------------------------------------------

    def hold(self, *, key: str, payment_id: str, card: Any, amount: Money) -> Result:
        if not isinstance(card, CardRef) or card.kind != LIGHTNING:
            return answers.refused(
                amount, ErrorCode.UNSUPPORTED, "lightning takes wallet payments only"
            )
        if amount.minor <= 0:
            return answers.refused(
                amount, ErrorCode.AMOUNT_INVALID, "an invoice is for a positive amount"
            )
        try:
            earlier = self._get("/api/v1/payments", params={"external_id": payment_id})
        except _NoAnswer as exc:
            return answers.no_answer(amount, str(exc))
        if isinstance(earlier, list) and earlier:
            first = earlier[0]
            if (first.get("extra") or {}).get("gateway_key") != key:
                return answers.refused(
                    amount,
                    ErrorCode.INVALID_REQUEST,
                    f"payment {payment_id} has an invoice under another key",
                )
            return answers.invoiced(first, amount)
        try:
            rate = self._rates.quote(amount.currency)
        except RateUnavailable as exc:
            return answers.refused(amount, ErrorCode.PROCESSOR_UNAVAILABLE, str(exc))
        sats = sats_for(amount, rate.btc_price)
        body: dict[str, Any] = {
            "out": False,
            "amount": sats,
            "unit": "sat",
            "memo": f"EV charging {payment_id}",
            "expiry": self._expiry_s,
            "external_id": payment_id,
            "extra": {
                "gateway_key": key,
                "payment_id": payment_id,
                "fiat_minor": amount.minor,
                "fiat_currency": amount.currency,
                "btc_price": str(rate.btc_price),
                "rate_source": rate.source,
                "rate_at": rate.at.isoformat(),
            },
        }
        if self._webhook_url:
            body["webhook"] = self._webhook_url
        try:
            invoice = self._post("/api/v1/payments", body, self._invoice_key)
        except _NoAnswer as exc:
            return answers.no_answer(amount, str(exc))
        except _Refused as exc:
            return answers.refused(
                amount, ErrorCode.INVALID_REQUEST, str(exc), processor_code=exc.code
            )
        return answers.invoiced(invoice, amount)

    def increment(self, *, key: str, reference: str, amount: Money) -> Result:
        return answers.refused(
            amount, ErrorCode.UNSUPPORTED, "a lightning invoice is for a fixed amount"
        )

    def capture(self, *, key: str, reference: str, amount: Money) -> Result:
        try:
            now = self.status(payment_id="", reference=reference)
        except ProcessorUnreachable as exc:
            return answers.no_answer(amount, str(exc))
        extra = now.raw.get("extra") or {}
        if now.state is PaymentState.CAPTURED and extra.get("capture_key") == key:
            return answers.captured(now, reference)  # this capture, asked again
        if now.state in (PaymentState.CAPTURED, PaymentState.RELEASED):
            return answers.refused(
                amount, ErrorCode.ALREADY_SETTLED, f"the invoice is {now.state.value}"
            )
        if now.state is not PaymentState.HELD or now.held is None:
            return answers.refused(
                amount, ErrorCode.AMOUNT_INVALID, f"the invoice is {now.state.value}"
            )
        if amount.currency != now.held.currency or not 0 < amount.minor <= now.held.minor:
            return answers.refused(
                amount, ErrorCode.AMOUNT_INVALID, f"{amount} asked, {now.held} paid"
            )
        owed = now.held - amount
        record = {"capture_key": key, "captured_minor": amount.minor, "owed_back_minor": owed.minor}
        return self._record(reference, record, amount, answers.captured)

    def release(self, *, key: str, reference: str, amount: Money) -> Result:
        try:
            now = self.status(payment_id="", reference=reference)
        except ProcessorUnreachable as exc:
            return answers.no_answer(Money.zero(amount.currency), str(exc))
        if now.state is PaymentState.NOT_FOUND or now.held is None:
            return answers.refused(amount, ErrorCode.NOT_FOUND, f"no invoice {reference}")
        extra = now.raw.get("extra") or {}
        if now.state is PaymentState.RELEASED and extra.get("release_key") in (key, None):
            return answers.released(
                now, reference
            )  # asked again, or an invoice that expired unpaid
        if now.state is PaymentState.PENDING:
            # Unpaid: nothing to give back; the invoice expires by itself (LNbits cancels
            # only hold invoices).
            return answers.released(now, reference)
        if now.state is not PaymentState.HELD:
            return answers.refused(
                amount, ErrorCode.ALREADY_SETTLED, f"the invoice is {now.state.value}"
            )
        record = {"release_key": key, "released": True, "owed_back_minor": now.held.minor}
        return self._record(reference, record, amount, answers.released)

    def refund(
        self, *, key: str, reference: str, amount: Money, destination: str | None = None
    ) -> Result:
        """Pay the driver's invoice (`destination`) for what `amount` bought at the rate of
        the payment, never more in all than was captured."""
        if destination is None:
            return answers.refused(
                amount,
                ErrorCode.UNSUPPORTED,
                "a lightning refund is paid to an invoice from the driver's wallet",
            )
        try:
            now = self.status(payment_id="", reference=reference)
            paid_out = self._payouts(reference)
        except ProcessorUnreachable as exc:
            return answers.no_answer(amount, str(exc))
        for row in paid_out:
            if (row.get("extra") or {}).get("gateway_key") == key:
                return answers.payout_result(row, reference)
        if now.state is not PaymentState.CAPTURED or now.captured is None:
            return answers.refused(
                amount,
                ErrorCode.AMOUNT_INVALID,
                f"nothing captured: the invoice is {now.state.value}",
            )
        assert now.refunded is not None
        left = now.captured - now.refunded
        if amount.currency != left.currency or not 0 < amount.minor <= left.minor:
            return answers.refused(amount, ErrorCode.AMOUNT_INVALID, f"{amount} asked, {left} left")
        try:
            quote = self._quote_refund(now, amount, destination)
        except ChangeRefused as exc:
            code = ErrorCode.AMOUNT_INVALID if exc.code == "wrong_amount" else None
            if exc.code == "mismatch":
                code = ErrorCode.CONFIGURATION
            return answers.refused(
                amount, code or ErrorCode.INVALID_REQUEST, exc.message, processor_code=exc.code
            )
        except ProcessorUnreachable as exc:
            return answers.no_answer(amount, str(exc))
        return self._pay_out(
            "refund",
            key=key,
            reference=reference,
            amount=amount,
            destination=destination,
            quote=quote,
        )

    def quote_refund(self, *, reference: str, amount: Money, destination: str) -> ChangeQuote:
        """Check the payer's invoice for a refund of `amount` as `quote_change` does for the
        change: the satoshis that `amount` bought at the payment's rate, exactly."""
        now = self.status(payment_id="", reference=reference)
        if now.state is not PaymentState.CAPTURED:
            raise ChangeRefused("nothing_owed", f"nothing captured: it is {now.state.value}")
        return self._quote_refund(now, amount, destination)

    def _quote_refund(self, now: PaymentStatus, amount: Money, destination: str) -> ChangeQuote:
        price = answers.rate(now)
        sats = sats_for(amount, price)
        network = network_of(str(now.raw.get("bolt11") or ""))
        found = self._check_payer_invoice(destination, network=network, sats=sats, owed=amount)
        return ChangeQuote(payment_hash=found, sats=sats, btc_price=str(price))

    def _check_payer_invoice(
        self, destination: str, *, network: str, sats: int, owed: Money
    ) -> str:
        """The payment hash of the payer's invoice if it can take `sats` (`lightning_change`);
        else `ChangeRefused`, or `ProcessorUnreachable` when LNbits cannot be asked."""
        bolt11 = clean(destination)
        try:
            decoded = self._post("/api/v1/payments/decode", {"data": bolt11}, self._invoice_key)
        except _Refused:
            raise ChangeRefused("not_an_invoice", "this Lightning invoice cannot be read") from None
        except _NoAnswer as exc:
            raise ProcessorUnreachable(str(exc)) from None
        payment_hash = check_invoice(
            decoded, network=network, sats=sats, owed=owed, now=datetime.now(UTC)
        )
        try:
            # Without a key LNbits says whether any wallet of its own has this invoice paid.
            seen = self._send("GET", f"/api/v1/payments/{payment_hash}", None, "", None)
        except _Refused as exc:
            if exc.status != 404:  # 404: not LNbits's invoice; its own node refuses a repeat
                raise ProcessorUnreachable(str(exc)) from None
            seen = {}
        except _NoAnswer as exc:
            raise ProcessorUnreachable(str(exc)) from None
        if isinstance(seen, Mapping) and seen.get("paid"):
            raise ChangeRefused(
                "already_paid", "this invoice is paid already: make a new one in your wallet"
            )
        return payment_hash

    def pay_out(self, *, key: str, reference: str, amount: Money, invoice: str) -> Result:
        """The operator's refund to the driver's `invoice` (`refund` with a destination)."""
        return self.refund(key=key, reference=reference, amount=amount, destination=invoice)

    # -- the change of a prepayment (`port.PaysChange`, `lightning_change`) -----------------

    def change_sats(self, *, reference: str, owed: Money) -> int:
        return self._change(reference, owed)[0]

    def _change(self, reference: str, owed: Money) -> tuple[int, Decimal, PaymentStatus]:
        """The change in satoshis, the payment's rate, and the paid invoice at LNbits."""
        now = self.status(payment_id="", reference=reference)
        if now.state not in (PaymentState.CAPTURED, PaymentState.RELEASED) or not now.held:
            raise ChangeRefused("nothing_owed", f"the payment is {now.state.value}: nothing owed")
        captured = now.captured or Money.zero(now.held.currency)
        if now.held - captured != owed:
            raise ChangeRefused("mismatch", f"{owed} asked, LNbits shows {now.held - captured}")
        price = answers.rate(now)
        return change_sats(abs(int(now.raw.get("amount") or 0)), captured, price), price, now

    def quote_change(self, *, reference: str, owed: Money, destination: str) -> ChangeQuote:
        sats, price, now = self._change(reference, owed)
        network = network_of(str(now.raw.get("bolt11") or ""))
        found = self._check_payer_invoice(destination, network=network, sats=sats, owed=owed)
        return ChangeQuote(payment_hash=found, sats=sats, btc_price=str(price))

    def pay_change(self, *, key: str, reference: str, owed: Money, destination: str) -> Result:
        try:
            earlier = self.change_status(key=key, reference=reference)
        except ProcessorUnreachable as exc:
            return answers.no_answer(owed, str(exc))
        if earlier is not None:
            return earlier  # paid (or tried) under this key already: never a second payout
        try:
            quote = self.quote_change(reference=reference, owed=owed, destination=destination)
        except ChangeRefused as exc:
            return answers.refused(
                owed, ErrorCode.INVALID_REQUEST, exc.message, processor_code=exc.code
            )
        except ProcessorUnreachable as exc:
            return answers.no_answer(owed, str(exc))
        return self._pay_out(
            "change",
            key=key,
            reference=reference,
            amount=owed,
            destination=destination,
            quote=quote,
        )

    def change_status(self, *, key: str, reference: str) -> Result | None:
        for row in self._payouts(reference, kind="change"):
            if (row.get("extra") or {}).get("gateway_key") == key:
                return answers.payout_result(row, reference)
        return None

    # -- status and webhooks ---------------------------------------------------------------

    def status(self, *, payment_id: str, reference: str | None) -> PaymentStatus:
        try:
            if reference:
                answer = self._get(f"/api/v1/payments/{reference}")
                details = answer.get("details") if isinstance(answer, Mapping) else None
                paid = bool(answer.get("paid")) if isinstance(answer, Mapping) else False
            else:
                found = self._get("/api/v1/payments", params={"external_id": payment_id})
                details = found[0] if isinstance(found, list) and found else None
                paid = isinstance(details, Mapping) and details.get("status") == "success"
        except _Refused as exc:
            if exc.status == 404:
                return answers.not_found(reference or "")
            raise ProcessorUnreachable(f"lnbits refused the status request: {exc}") from None
        except _NoAnswer as exc:
            raise ProcessorUnreachable(str(exc)) from None
        if not isinstance(details, Mapping):
            return answers.not_found(reference or "")
        extra = details.get("extra") or {}
        try:
            fiat = Money(int(extra["fiat_minor"]), str(extra["fiat_currency"]))
        except (KeyError, ValueError, TypeError):
            raise ProcessorUnreachable("lnbits invoice carries no fiat amount") from None
        zero = Money.zero(fiat.currency)
        hash_ = str(details.get("payment_hash", reference or ""))
        if paid:
            refunded = sum(
                int((row.get("extra") or {}).get("fiat_minor", 0))
                for row in self._payouts(hash_)
                if row.get("status") == "success"
            )
            # What the gateway did with the paid invoice, recorded in its `extra` (`_record`).
            state = PaymentState.HELD
            captured = zero
            if "captured_minor" in extra:
                state = PaymentState.CAPTURED
                captured = Money(int(extra["captured_minor"]), fiat.currency)
            elif extra.get("released"):
                state = PaymentState.RELEASED
            return PaymentStatus(
                state=state,
                reference=hash_,
                held=fiat,
                captured=captured,
                refunded=Money(refunded, fiat.currency),
                raw=details,
            )
        state = PaymentState.PENDING
        if details.get("status") == "failed" or answers.expired(details):
            state = PaymentState.RELEASED
        return PaymentStatus(
            state=state, reference=hash_, held=zero, captured=zero, refunded=zero, raw=details
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        try:
            document = json.loads(body)
            if isinstance(document, str):  # LNbits posts the payment as a JSON string
                document = json.loads(document)
            payment_hash = str(document["payment_hash"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(f"lightning webhook not understood: {exc!r}") from None
        if len(payment_hash) != 64 or any(c not in "0123456789abcdef" for c in payment_hash):
            raise WebhookRejected("lightning webhook: not a payment hash")
        # Nothing in the body is believed: LNbits's own answer for this wallet decides.
        try:
            now = self.status(payment_id="", reference=payment_hash)
        except ProcessorUnreachable as exc:
            raise WebhookRejected(f"lightning webhook not confirmed: {exc}") from None
        if now.state is not PaymentState.HELD or now.held is None:
            raise WebhookRejected(f"lightning webhook: invoice is {now.state.value}, not paid")
        extra = now.raw.get("extra") or {}
        return WebhookEvent(
            event_id=f"{payment_hash}:paid",
            kind=WebhookKind.PAID,
            reference=payment_hash,
            payment_id=str(extra.get("payment_id")) if extra.get("payment_id") else None,
            amount=now.held,
            raw=now.raw,
        )

    # -- plumbing --------------------------------------------------------------------------

    def _record(
        self,
        reference: str,
        record: Mapping[str, Any],
        asked: Money,
        answer: Callable[[PaymentStatus, str], Result],
    ) -> Result:
        """Write what the gateway did with a paid invoice into its ``extra`` at LNbits
        (``PATCH /api/v1/payments/extra``, which only appends: a key written once stays), and
        answer from LNbits's record read back, so a race or a retry answers what is there."""
        try:
            self._send(
                "PATCH",
                "/api/v1/payments/extra",
                {"payment_hash": reference, "extra": dict(record)},
                self._admin_key,
                None,
            )
        except _NoAnswer as exc:
            return answers.no_answer(asked, str(exc))
        except _Refused:
            pass  # already written (by this key's earlier call, or another step): read it
        try:
            now = self.status(payment_id="", reference=reference)
        except ProcessorUnreachable as exc:
            return answers.no_answer(asked, str(exc))
        extra = now.raw.get("extra") or {}
        mine = "capture_key" if "capture_key" in record else "release_key"
        wanted = PaymentState.CAPTURED if mine == "capture_key" else PaymentState.RELEASED
        # Ours only if LNbits shows this key's record and the state it makes (a capture and
        # a release written side by side leave the capture in force).
        if now.state is wanted and extra.get(mine) == record[mine]:
            return answer(now, reference)
        return answers.refused(
            asked, ErrorCode.ALREADY_SETTLED, f"the invoice is {now.state.value}"
        )

    def _pay_out(
        self,
        kind: _PayoutKind,
        *,
        key: str,
        reference: str,
        amount: Money,
        destination: str,
        quote: ChangeQuote,
    ) -> Result:
        """Pay the driver's invoice `destination` from the operator's wallet for `amount` of
        the payment `reference`, a refund or its change (`kind`).

        The outgoing payment carries ``external_id`` ``<kind>:<reference>`` (how `_payouts`
        finds it again), and in ``extra`` the gateway's key, ``<kind>_of`` the payment, the
        fiat amount and the rate it was converted at. A payment LNbits refuses (520 with
        ``"status": "failed"``, or a 4xx) is the processor's refusal; no answer is no answer,
        and the caller looks the payout up by key before paying again."""
        body = {
            "out": True,
            "bolt11": clean(destination),
            "external_id": f"{kind}:{reference}",
            "extra": {
                "gateway_key": key,
                f"{kind}_of": reference,
                "fiat_minor": amount.minor,
                "fiat_currency": amount.currency,
                "btc_price": quote.btc_price,
            },
        }
        try:
            payout = self._post("/api/v1/payments", body, self._admin_key)
        except _NoAnswer as exc:
            return answers.no_answer(amount, str(exc))
        except _Refused as exc:
            return answers.refused(
                amount, ErrorCode.PROCESSOR_UNAVAILABLE, str(exc), processor_code=exc.code
            )
        return answers.payout_result(payout, reference)

    def _payouts(self, reference: str, *, kind: _PayoutKind = "refund") -> list[Mapping[str, Any]]:
        """The wallet's outgoing payments for `reference` of `kind` (refund, change)."""
        try:
            rows = self._get("/api/v1/payments", params={"external_id": f"{kind}:{reference}"})
        except (_NoAnswer, _Refused) as exc:
            raise ProcessorUnreachable(f"lnbits payouts: {exc}") from None
        return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self._send("GET", path, None, self._invoice_key, params)

    def _post(self, path: str, body: Mapping[str, Any], api_key: str) -> Any:
        return self._send("POST", path, body, api_key, None)

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        api_key: str,
        params: Mapping[str, str] | None,
    ) -> Any:
        try:
            answer = requests.request(
                method,
                f"{self._url}{path}",
                json=body,
                params=params,
                headers={"X-Api-Key": api_key} if api_key else {},
                timeout=self._timeout_s,
            )
        except requests.RequestException as exc:
            log.warning("event=lnbits_no_answer account=%s error=%s", self.account, type(exc))
            raise _NoAnswer(f"no answer from lnbits: {type(exc).__name__}") from None
        try:
            data = answer.json()
        except ValueError:
            data = {}
        # LNbits answers a payment it refused for good (an internal invoice paid already, too
        # little balance) with 520 and `"status": "failed"`: a refusal, not a lost answer.
        failed = isinstance(data, dict) and data.get("status") == "failed"
        if answer.status_code >= 500 and not failed:
            raise _NoAnswer(f"lnbits answered {answer.status_code}")
        if answer.status_code >= 400:
            detail = data.get("detail", "") if isinstance(data, dict) else ""
            raise _Refused(answer.status_code, str(detail))
        return data


class _NoAnswer(Exception):
    pass


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"lnbits answered {status}: {detail}")
        self.status = status
        self.code = f"http_{status}"
