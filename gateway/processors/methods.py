"""How a driver pays: the one vocabulary for a payment method across the gateway.

The same words name `CardRef.kind` (what an adapter is given), the authorization row's
`card_kind` (what the ledger recorded), and a routing rule's `method` (which processor takes
it). Two arrive from the kiosk over the terminal API (`wire.CardIn.kind`); three from the
phone's payment page (pay by phone), which calls `Payments.hold_web` with a `CardRef` of one
of them.
"""

from __future__ import annotations

from typing import Final

# From the kiosk's own reader.
PAYMENT: Final = "payment"  # a payment card: the protected card-data blob (DUKPT)
ID_TOKEN: Final = "id_token"  # an identification token (RFID fleet or roaming card UID)

# From the phone's payment page.
# A card typed into the processor's own fields: a Stripe PaymentMethod id (`pm_…`, made by
# Stripe's Payment Element), or the encrypted fields of Adyen's Card component (`type: scheme`).
WEB_CARD: Final = "web_card"
# A phone wallet (Apple Pay, Google Pay): a Stripe PaymentMethod id made from the wallet's
# token, or Adyen's `paymentMethod` object of type `applepay` / `googlepay`.
WEB_WALLET: Final = "web_wallet"
# A Lightning invoice the driver pays from their own wallet; no card at all.
LIGHTNING: Final = "lightning"

KIOSK_METHODS: Final = frozenset({PAYMENT, ID_TOKEN})
WEB_METHODS: Final = frozenset({WEB_CARD, WEB_WALLET, LIGHTNING})
METHODS: Final = KIOSK_METHODS | WEB_METHODS
