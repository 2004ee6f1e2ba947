"""Pay by phone by card through Adyen, without a browser: what the page offers and what the
gateway refuses before any hold. The card form's fields are sealed here as Adyen's CSE
library seals them in the browser (`seal_cse`, the format `AdyenBooks` opens with the
account's private key); Chromium runs the page's real script and library in `test_browser.py`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import requests

from launcher.adyen_cse import seal as seal_cse
from tests.ledger_check import assert_ledger_agrees
from tests.pay.conftest import Run, adyen_key, adyen_routing, phone_session, qr
from tests.processors.adyen_books import AdyenBooks, cse_key, cse_public_key

CARD = {"number": "4111111111111111", "expiryMonth": "03", "expiryYear": "2030", "cvc": "737"}
FIELDS = {
    "number": "encryptedCardNumber",
    "expiryMonth": "encryptedExpiryMonth",
    "expiryYear": "encryptedExpiryYear",
    "cvc": "encryptedSecurityCode",
}


def sealed_form(public_key: str, holder: str = "Jo Driver") -> dict[str, str]:
    """The form the page's script posts: each field sealed on its own with the generation time."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    form = {"method": "web_card", "holderName": holder}
    for name, value in CARD.items():
        form[FIELDS[name]] = seal_cse({name: value, "generationtime": now}, public_key)
    return form


def payments(books: AdyenBooks) -> list[str]:
    return [ex.path for ex in books.exchanges if ex.path == "/payments"]


def test_the_page_offers_adyens_card_form_with_only_our_own_scripts(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying("expect idle", adyen_routing(tmp_path, adyen_books))
    page = requests.get(qr(sim), timeout=10)
    assert 'id="way-adyen"' in page.text
    assert 'id="way-test-card"' not in page.text and 'id="way-stripe"' not in page.text
    assert adyen_key(adyen_books) in page.text
    # The card inputs carry no name: a browser never posts them.
    for field in ("adyen-number", "adyen-month", "adyen-year", "adyen-cvc"):
        tag = page.text.split(f'id="{field}"')[1].split(">")[0]
        assert "name=" not in tag
    assert '<script src="/static/vendor/adyen-cse-0.1.19.nodom.min.js"></script>' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-src" not in policy
    # One page environment: the style is a file of ours, no inline style allowed.
    assert "style-src 'self';" in policy and "unsafe-inline" not in policy
    assert '<link rel="stylesheet" href="/static/pay.css">' in page.text
    assert requests.get(sim.gateway.url + "/static/pay.css", timeout=10).status_code == 200
    library = requests.get(sim.gateway.url + "/static/vendor/adyen-cse-0.1.19.nodom.min.js")
    assert library.status_code == 200 and "Version: 0_1_19" in library.text


def test_without_the_cse_key_no_card_form_is_offered(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying("expect idle", adyen_routing(tmp_path, adyen_books, cse=False))
    page = requests.get(qr(sim), timeout=10)
    assert 'id="way-adyen"' not in page.text and "<script" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]


def test_card_fields_not_sealed_by_the_cse_library_are_refused_before_any_hold(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying("expect idle", adyen_routing(tmp_path, adyen_books))
    url = qr(sim)
    good = sealed_form(adyen_key(adyen_books))
    for form in (
        good | {"encryptedCardNumber": "4111111111111111"},  # a card number in clear
        good | {"encryptedSecurityCode": ""},
        {k: v for k, v in good.items() if k != "encryptedExpiryYear"},
        good | {"encryptedCardNumber": "adyenjs_0_1_19$" + "A" * 5000 + "$AAAA"},
        good | {"encryptedCardNumber": "test_4111111111111111"},  # Adyen's test values
        {"method": "web_card", "test_card": "4242"},
    ):
        assert requests.post(url, data=form, timeout=30).status_code == 400
    assert sim.gateway.ledger.all_authorizations() == []
    assert payments(adyen_books) == []


def test_fields_sealed_with_another_key_are_refused_by_adyen_and_the_code_stays_open(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying("expect idle", adyen_routing(tmp_path, adyen_books))
    url = qr(sim)
    stranger = cse_public_key(cse_key())
    answer = requests.post(url, data=sealed_form(stranger), timeout=30)
    assert answer.status_code == 402 and "The payment was declined" in answer.text
    assert payments(adyen_books) == ["/payments"]  # Adyen answered 422 "Unable to decrypt"
    [row] = sim.gateway.ledger.all_authorizations()
    assert (row["processor"], row["status"], row["amount_captured"]) == ("adyen", "declined", None)
    assert qr(sim) == url and adyen_books.opened == {}


def test_a_card_adyen_refuses_charges_nothing_and_the_code_can_be_paid_again(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying("expect idle", adyen_routing(tmp_path, adyen_books))
    url = qr(sim)
    key = adyen_key(adyen_books)
    # Adyen's test environment refuses a card whose holder name is a refusal reason.
    refused = requests.post(url, data=sealed_form(key, "NOT_ENOUGH_BALANCE"), timeout=30)
    assert refused.status_code == 402
    assert qr(sim) == url
    paid = requests.post(url, data=sealed_form(key), timeout=30)
    assert "/pay/sessions/" in paid.url
    sim.run_lines("wait 1s\nexpect plug-in\nwait 3m\nexpect idle")  # never plugged in
    approved = next(r for r in sim.gateway.ledger.all_authorizations() if r["status"] != "declined")
    psp = approved["processor_ref"]
    assert adyen_books.opened[psp] == CARD
    # Adyen confirms the release with its CANCELLATION notification.
    for notice in adyen_books.notifications(psp):
        hook = f"{sim.gateway.url}/webhooks/adyen/EvChargingECOM"
        assert requests.post(hook, data=notice, timeout=30).text == "[accepted]"
    sim.run_lines("wait 2m")  # the kiosk asks again: the release is confirmed now
    sent = [json.loads(ex.body) for ex in adyen_books.exchanges]
    assert all("4111111111111111" not in json.dumps(body) for body in sent)
    assert_ledger_agrees(sim)


def test_simulate_pays_the_qr_through_adyen_and_the_session_is_captured(
    paying: Run, adyen_books: AdyenBooks, tmp_path: Path
) -> None:
    sim = paying(phone_session("declined", "card"), adyen_routing(tmp_path, adyen_books))
    assert "The payment was declined" in sim.phone.pages[1]
    [approved] = [r for r in sim.gateway.ledger.all_authorizations() if r["status"] != "declined"]
    # Adyen confirms the capture with its CAPTURE notification; the kiosk asks again.
    for notice in adyen_books.notifications(approved["processor_ref"]):
        hook = f"{sim.gateway.url}/webhooks/adyen/EvChargingECOM"
        assert requests.post(hook, data=notice, timeout=30).text == "[accepted]"
    sim.run_lines("wait 2m")
    [result] = sim.results()
    assert (result["ended"], result["settlement"]) == ("remote", "captured")
    assert result["amount_captured"] == result["amount_priced"] > 0
    row = sim.gateway.ledger.fetch(approved["id"])
    assert row is not None and row.status == "captured"
    assert row.amount_captured == result["amount_captured"]
    assert adyen_books.opened[approved["processor_ref"]] == CARD
    assert_ledger_agrees(sim)
