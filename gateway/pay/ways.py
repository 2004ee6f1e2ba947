"""The ways to pay a code's payment page offers: exactly what the operator's routing
(`--processors`, `gateway/processors/routing.py`) sends, for this terminal, its site and the
code's currency, to an adapter whose web flow this page carries.

For each web method (`methods.WEB_CARD`, `WEB_WALLET`, `LIGHTNING`) the page asks the router
where a hold of that method would go; it offers the method when that adapter has a flow here:
- the simulated processor takes `web_card` with its test cards (a form, no script);
- Stripe takes `web_card` through its own stripe.js card element (a SetupIntent confirmed in
  the browser gives the PaymentMethod the hold is made with), when its table names the
  account's publishable key;
- Stripe takes `web_wallet` (Apple Pay, Google Pay) through stripe.js's payment request
  button, when its table names the publishable key and the account's `country`; the page
  shows it only where the phone's browser can pay with a wallet (the script asks);
- Adyen takes `web_card` through a card form whose fields the browser encrypts with the
  account's client-side encryption key (Adyen's CSE library, vendored and served from here),
  when its table names `cse_public_key`;
- LNbits (`lightning`) takes `lightning`: an invoice shown as a QR code and a `lightning:`
  link, no script.
A method routed elsewhere (a phone wallet routed to Adyen, whose wallet buttons are Adyen's
hosted components) is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.processors.adyen import AdyenProcessor
from gateway.processors.methods import LIGHTNING, WEB_CARD, WEB_WALLET
from gateway.processors.port import Processor
from gateway.processors.registry import Processors
from gateway.processors.stripe import StripeProcessor

TEST_CARD: Final = "test_card"
STRIPE: Final = "stripe"
INVOICE: Final = "invoice"
ADYEN: Final = "adyen"
STRIPE_WALLET: Final = "stripe_wallet"

# The page's flows, by the adapter a method is routed to.
FLOWS: Final = {
    ("simulated", WEB_CARD): TEST_CARD,
    ("stripe", WEB_CARD): STRIPE,
    ("stripe", WEB_WALLET): STRIPE_WALLET,
    ("adyen", WEB_CARD): ADYEN,
    ("lightning", LIGHTNING): INVOICE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Way:
    """One way to pay on the page: the method (the hold's `CardRef.kind`), the page flow that
    collects it, and the adapter routing chose."""

    method: str
    flow: str
    processor: Processor


def ways_to_pay(processors: Processors, *, terminal_id: str, currency: str) -> list[Way]:
    """What the page offers now, in the page's order (card, wallet, Lightning)."""
    ways: list[Way] = []
    for method in (WEB_CARD, WEB_WALLET, LIGHTNING):
        processor = processors.route(terminal=terminal_id, currency=currency, method=method)
        flow = FLOWS.get((processor.name, method))
        if flow is None:
            continue
        if flow == STRIPE and not (
            isinstance(processor, StripeProcessor) and processor.publishable_key
        ):
            continue
        if flow == STRIPE_WALLET and not (
            isinstance(processor, StripeProcessor)
            and processor.publishable_key
            and processor.country
        ):
            continue
        if flow == ADYEN and not (
            isinstance(processor, AdyenProcessor) and processor.cse_public_key
        ):
            continue
        ways.append(Way(method=method, flow=flow, processor=processor))
    return ways
