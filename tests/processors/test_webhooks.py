"""The gateway's webhook endpoints (`POST /webhooks/{processor}/{account}`) with the adapters
against their peers: verified before anything is read, deduplicated by event id in the ledger,
applied as idempotent state transitions; replays, reordering, forged, stale and malformed
notifications change nothing. Adyen's modifications, which Adyen answers `received` and
settles only by notification, are finished by their notification; a Lightning invoice is
held when LNbits calls the gateway; the simulated processor's signed notification settles a
capture whose answer was lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.processors import CardRef
from gateway.processors.methods import LIGHTNING
from gateway.server import EmbeddedGateway
from terminal.money import Money
from tests.gateway.test_idempotency import authorization, capture
from tests.processors.conftest import (
    LIGHTNING_ROUTE,
    STRIPE_WEBHOOK_SECRET,
    Lnbits,
    processors_file,
)
from tests.processors.peers import Inbox, RecordingProxy
from tests.processors.stack import STRIPE_APPROVE, stripe_payment_method
from tests.processors.test_adyen import ACCOUNT, _card, _notification
from tests.processors.test_stripe import _sign

TERMINAL = "KIOSK-0001"
ADYEN_PSP = "993617895215577D"  # the pspReference of Prism's example "card-securedfields"


def _post(gw: EmbeddedGateway, path: str, body: Any, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(gw.url + path, json=body, headers=headers, timeout=30)


def _notify(gw: EmbeddedGateway, document: Any, processor: str, account: str) -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return requests.post(
        f"{gw.url}/webhooks/{processor}/{account}",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def _row(gw: EmbeddedGateway, aid: str) -> dict[str, Any]:
    return next(r for r in gw.ledger.all_authorizations() if r["id"] == aid)


def _moves(gw: EmbeddedGateway, aid: str) -> list[tuple[str, int]]:
    return [
        (m["kind"], m["amount"]) for m in gw.ledger.all_movements() if m["authorization_id"] == aid
    ]


def test_an_adyen_capture_is_settled_by_its_notification_once(
    adyen_gw: EmbeddedGateway, prism_proxy: RecordingProxy
) -> None:
    gw, aid = adyen_gw, "adyen-session-1"
    prism_proxy.prefer = "example=card-securedfields"
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=_card(), amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    prism_proxy.prefer = None
    # Adyen answers the capture `received`: the kiosk is told "no answer yet" and retries.
    assert _post(gw, f"/v1/authorizations/{aid}/capture", capture(3000), "c1").status_code == 504
    assert _row(gw, aid)["op_state"] == "unknown"
    assert _post(gw, f"/v1/authorizations/{aid}/capture", capture(3000), "c1").status_code == 504

    notice = _notification(
        code="CAPTURE",
        pspReference="CAPT0000000001",
        originalReference=ADYEN_PSP,
        merchantReference=aid,
        amount={"currency": "EUR", "value": 3000},
    )

    forged = json.loads(json.dumps(notice))
    forged["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = 5000
    assert _notify(gw, forged, "adyen", ACCOUNT).status_code == 400
    assert _notify(gw, b"{not json", "adyen", ACCOUNT).status_code == 400
    unsigned = json.loads(json.dumps(notice))
    del unsigned["notificationItems"][0]["NotificationRequestItem"]["additionalData"]
    assert _notify(gw, unsigned, "adyen", ACCOUNT).status_code == 400
    assert _notify(gw, notice, "adyen", "OtherAccount").status_code == 404
    assert _row(gw, aid)["status"] == "approved" and gw.ledger.webhooks() == []

    answer = _notify(gw, notice, "adyen", ACCOUNT)
    assert (answer.status_code, answer.text) == (200, "[accepted]")
    row = _row(gw, aid)
    assert (row["status"], row["amount_captured"], row["op"]) == ("captured", 3000, None)
    # Adyen sends it again (it did not see our answer): accepted, nothing moves twice.
    again = _notify(gw, notice, "adyen", ACCOUNT)
    assert (again.status_code, again.text) == (200, "[accepted]")
    assert _moves(gw, aid) == [("hold", 5000), ("capture", 3000)]
    [seen] = gw.ledger.webhooks()
    assert (seen["authorization_id"], seen["effect"]) == (aid, "settled")
    # The kiosk's retry now gets the capture.
    retried = _post(gw, f"/v1/authorizations/{aid}/capture", capture(3000), "c1")
    assert retried.status_code == 200 and retried.json()["status"] == "captured"

    # A cancellation arriving out of order after the capture changes nothing.
    late = _notification(
        code="CANCELLATION",
        pspReference="CANC0000000001",
        originalReference=ADYEN_PSP,
        merchantReference=aid,
    )
    assert _notify(gw, late, "adyen", ACCOUNT).text == "[accepted]"
    assert _row(gw, aid)["status"] == "captured"
    assert _moves(gw, aid) == [("hold", 5000), ("capture", 3000)]
    assert [w["effect"] for w in gw.ledger.webhooks()] == ["settled", "noted"]


def test_a_refused_adyen_cancel_leaves_the_hold(
    adyen_gw: EmbeddedGateway, prism_proxy: RecordingProxy
) -> None:
    gw, aid = adyen_gw, "adyen-session-2"
    prism_proxy.prefer = "example=card-securedfields"
    gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=_card(), amount=Money(5000, "EUR")
    )
    prism_proxy.prefer = None
    assert _post(gw, f"/v1/authorizations/{aid}/void", {"reason": "x"}, "v1").status_code == 504
    refused = _notification(
        code="CANCELLATION",
        success="false",
        pspReference="CANC0000000002",
        originalReference=ADYEN_PSP,
        merchantReference=aid,
    )
    assert _notify(gw, refused, "adyen", ACCOUNT).text == "[accepted]"
    row = _row(gw, aid)
    assert (row["status"], row["op"], row["flag"]) == ("approved", None, "release_refused")
    assert _moves(gw, aid) == [("hold", 5000)]


def test_stripe_events_from_localstripe_are_taken_once_and_forgeries_refused(
    stripe_gw: EmbeddedGateway, localstripe: str, inbox: Inbox
) -> None:
    gw, aid = stripe_gw, "stripe-session-1"
    requests.post(
        f"{localstripe}/_config/webhooks/gateway-test",
        data={"url": inbox.url, "secret": STRIPE_WEBHOOK_SECRET},
        timeout=5,
    ).raise_for_status()
    card = stripe_payment_method(localstripe, STRIPE_APPROVE)
    held = gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(5000, "EUR")
    )
    assert held.answer.body["status"] == "approved"
    reference = _row(gw, aid)["processor_ref"]
    assert _post(gw, f"/v1/authorizations/{aid}/capture", capture(4200), "c1").status_code == 200

    # Relay localstripe's deliveries (its real, signed event shapes) to the gateway.
    deadline, mine = time.monotonic() + 20, None
    while mine is None and time.monotonic() < deadline:
        headers, body = inbox.received.get(timeout=max(0.1, deadline - time.monotonic()))
        answer = requests.post(
            f"{gw.url}/webhooks/stripe/acct_web", data=body, headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        if reference.encode() in body and b"payment_intent.succeeded" in body:
            mine = (headers, body)
    assert mine is not None
    headers, body = mine
    taken = [w for w in gw.ledger.webhooks() if w["reference"] == reference]
    assert [
        (w["kind"], w["authorization_id"], w["effect"]) for w in taken if w["kind"] == "captured"
    ] == [("captured", aid, "noted")]
    count = len(gw.ledger.webhooks())
    # The same delivery again: accepted, nothing new.
    again = requests.post(
        f"{gw.url}/webhooks/stripe/acct_web", data=body, headers=headers, timeout=30
    )
    assert again.status_code == 200 and len(gw.ledger.webhooks()) == count
    # Forged (one amount changed), signed with another secret, or stale (signed 10 minutes
    # ago, outside Stripe's five-minute tolerance): refused, nothing recorded.
    forged = body.replace(b'"amount": 5000', b'"amount": 9000')
    assert forged != body
    now = int(time.time())
    for bad_body, bad_headers in [
        (forged, headers),
        (body, {**_sign(body, "whsec_other", now), "Content-Type": "application/json"}),
        (
            body,
            {**_sign(body, STRIPE_WEBHOOK_SECRET, now - 600), "Content-Type": "application/json"},
        ),
        (b"[]", _sign(b"[]", STRIPE_WEBHOOK_SECRET, now)),
    ]:
        refused = requests.post(
            f"{gw.url}/webhooks/stripe/acct_web", data=bad_body, headers=bad_headers, timeout=30
        )
        assert refused.status_code == 400
    assert len(gw.ledger.webhooks()) == count
    row = _row(gw, aid)
    assert (row["status"], row["amount_captured"]) == ("captured", 4200)


def test_a_lightning_invoice_is_held_when_lnbits_calls_the_gateway(
    tmp_path: Path, lnbits: Lnbits, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = lnbits.wallet("webhook-operator")
    driver = lnbits.wallet("webhook-driver", sats=1_000_000)
    monkeypatch.setenv("T_LN_INVOICE", operator.invoice_key)
    monkeypatch.setenv("T_LN_ADMIN", operator.admin_key)
    gw = EmbeddedGateway(tmp_path / "g.sqlite3")  # for its port: the file names it
    gw.up()
    port = gw.port
    gw.close()
    tables = f"""
[[processors]]
adapter = "lightning"
account = "op-wallet"
url = "{lnbits.url}"
invoice_key_env = "T_LN_INVOICE"
admin_key_env = "T_LN_ADMIN"
webhook_url = "http://127.0.0.1:{port}/webhooks/lightning/op-wallet"
"""
    file = processors_file(tmp_path, tables, LIGHTNING_ROUTE)
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", port=port, processors_file=file)
    gw.up()
    try:
        wallet = CardRef(
            kind=LIGHTNING, token="", brand="lightning", last4="", expiry=None, payload={}
        )
        aid = "ln-session-1"
        pending = gw.payments.hold_web(
            authorization_id=aid, terminal_id=TERMINAL, card=wallet, amount=Money(1500, "EUR")
        )
        assert pending.answer.body["status"] == "pending"
        lnbits.pay(driver, pending.pay["bolt11"])
        deadline = time.monotonic() + 20
        while _row(gw, aid)["status"] != "approved":
            assert time.monotonic() < deadline, "LNbits's webhook did not hold the payment"
            time.sleep(0.1)
        row = _row(gw, aid)
        assert (row["amount_authorized"], row["processor_ref"]) == (
            1500,
            pending.pay["payment_hash"],
        )
        [seen] = gw.ledger.webhooks()
        assert (seen["kind"], seen["effect"]) == ("paid", "settled")
        # LNbits calls again (a retry): accepted, nothing new.
        again = _notify(gw, {"payment_hash": row["processor_ref"]}, "lightning", "op-wallet")
        assert again.status_code == 200 and len(gw.ledger.webhooks()) == 1
        # A body naming a payment hash LNbits does not show paid is refused.
        assert _notify(gw, {"payment_hash": "0" * 64}, "lightning", "op-wallet").status_code == 400
        captured = _post(gw, f"/v1/authorizations/{aid}/capture", capture(1100), "c1")
        assert captured.status_code == 200, captured.text
        # Paid up front: the 4.00 not captured is owed back to the driver.
        assert _moves(gw, aid) == [("hold", 1500), ("capture", 1100), ("change_owed", 400)]
    finally:
        gw.close()


def test_a_simulated_notification_settles_a_lost_capture_once_and_forgeries_change_nothing(
    tmp_path: Path,
) -> None:
    gw = EmbeddedGateway(tmp_path / "g.sqlite3", reconcile_every_s=3600)
    gw.up()
    try:
        sim, aid = gw.processor, "sim-webhook-0001"
        assert _post(gw, "/v1/authorizations", authorization(aid), "a").status_code == 200
        sim.fail = "lost"  # the capture happens at the processor; its answer is lost
        assert _post(gw, f"/v1/authorizations/{aid}/capture", capture(321), "c").status_code == 504
        reference = _row(gw, aid)["processor_ref"]
        url = f"{gw.url}/webhooks/simulated/{sim.account}"

        def event(event_id: str, kind: str, minor: int) -> bytes:
            body = {"id": event_id, "type": kind, "reference": reference, "payment_id": aid}
            return json.dumps(body | {"minor": minor, "currency": "EUR"}).encode()

        def send(body: bytes, signature: str) -> Any:
            return requests.post(url, data=body, headers={"Sim-Signature": signature}, timeout=30)

        captured = event("evt-capture", "captured", 321)
        # (A refused notification makes the gateway ask the processor instead; the outage
        # going on, asking learns nothing, so only what a forgery said could change the step.)
        sim.fail = "unreachable"
        assert send(captured, "0" * 64).status_code == 400  # forged
        assert send(captured, sim.sign(captured + b" ")).status_code == 400  # another body's
        assert send(b"{}", sim.sign(b"{}")).status_code == 400  # signed, but not a notification
        assert gw.ledger.webhooks() == [] and _row(gw, aid)["op_state"] == "unknown"
        sim.fail = None

        assert send(captured, sim.sign(captured)).status_code == 200
        assert send(captured, sim.sign(captured)).status_code == 200  # a duplicate
        row = _row(gw, aid)
        assert (row["status"], row["amount_captured"], row["op"]) == ("captured", 321, None)
        # Out of order: the hold's and a release's notifications after the capture.
        late = [event("evt-held", "held", 5000), event("evt-released", "released", 0)]
        for body in late:
            assert send(body, sim.sign(body)).status_code == 200
        assert _moves(gw, aid) == [("hold", 5000), ("capture", 321)]
        assert [w["effect"] for w in gw.ledger.webhooks()] == ["settled", "noted", "noted"]
        again = _post(gw, f"/v1/authorizations/{aid}/capture", capture(321), "c")
        assert again.status_code == 200 and again.json()["status"] == "captured"
    finally:
        gw.close()
