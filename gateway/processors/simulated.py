"""The simulated processor: test cards approve, decline, partially approve, or time out.

Decided by the last four digits of the card number, as processors' sandboxes do with test card
numbers (of the decrypted PAN when the gateway decrypted the card data, else of the last four
digits the terminal sent):
- ``0002`` declines (insufficient funds);
- ``0028`` approves half the amount asked for (partial approval);
- ``0119`` times out (the outcome is unknown to the gateway);
- anything else approves in full.
Increments of a hold approve in full while `supports_increment` is on (tests turn it off).
Every hold, capture and release is remembered, so tests can check nothing was done twice.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from gateway.processors import CardRef, Decision, HoldResult, ProcessorTimeout

DECLINE_LAST4 = "0002"
PARTIAL_LAST4 = "0028"
TIMEOUT_LAST4 = "0119"


@dataclass
class SimHold:
    reference: str
    amount_minor: int
    currency: str
    captured_minor: int | None = None
    released: bool = False
    keys: list[str] = field(default_factory=list)


class SimulatedProcessor:
    """Implements `gateway.processors.Processor` in memory."""

    name = "simulated"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holds: dict[str, SimHold] = {}
        self._by_key: dict[str, HoldResult] = {}
        self.supports_increment = True

    def hold(self, *, key: str, card: CardRef, amount_minor: int, currency: str) -> HoldResult:
        with self._lock:
            if key in self._by_key:
                return self._by_key[key]
            last4 = card.clear.pan[-4:] if card.clear is not None else card.last4
            if last4 == TIMEOUT_LAST4:
                raise ProcessorTimeout("simulated processor timeout")
            if last4 == DECLINE_LAST4:
                result = HoldResult(
                    decision=Decision.DECLINED,
                    amount_minor=0,
                    reference="",
                    reason="insufficient_funds",
                )
            else:
                approved = amount_minor // 2 if last4 == PARTIAL_LAST4 else amount_minor
                reference = "sim_" + uuid.uuid4().hex[:16]
                self.holds[reference] = SimHold(
                    reference=reference, amount_minor=approved, currency=currency, keys=[key]
                )
                result = HoldResult(
                    decision=Decision.APPROVED, amount_minor=approved, reference=reference
                )
            self._by_key[key] = result
            return result

    def increment(self, *, key: str, reference: str, amount_minor: int) -> HoldResult:
        with self._lock:
            if key in self._by_key:
                return self._by_key[key]
            hold = self.holds[reference]
            if hold.captured_minor is not None or hold.released:
                raise RuntimeError(f"hold {reference} already settled")
            hold.amount_minor = max(hold.amount_minor, amount_minor)
            hold.keys.append(key)
            result = HoldResult(
                decision=Decision.APPROVED, amount_minor=hold.amount_minor, reference=reference
            )
            self._by_key[key] = result
            return result

    def capture(self, *, key: str, reference: str, amount_minor: int) -> None:
        with self._lock:
            hold = self.holds[reference]
            if hold.captured_minor is not None or hold.released:
                if key in hold.keys:
                    return
                raise RuntimeError(f"hold {reference} already settled")
            if amount_minor > hold.amount_minor:
                raise RuntimeError("capture exceeds hold")
            hold.captured_minor = amount_minor
            hold.keys.append(key)

    def release(self, *, key: str, reference: str) -> None:
        with self._lock:
            hold = self.holds[reference]
            if hold.captured_minor is not None or hold.released:
                if key in hold.keys:
                    return
                raise RuntimeError(f"hold {reference} already settled")
            hold.released = True
            hold.keys.append(key)
