"""The v1 wire bodies (pydantic models). The OpenAPI document in `contract/openapi.json` is
generated from these and committed; both the gateway's and the terminal's tests check it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
RECEIPT_ID_PATTERN = r"^[A-Z0-9]{6,32}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


# The largest amount the wire carries, in minor units: far above any ceiling a gateway is
# configured with (`gateway.amounts`), far below where a 64-bit column or a processor overflows.
MAX_MINOR = 10**12


class Strict(BaseModel):
    """Wire bodies: unknown fields refused, strict types (no "5000" or true for 5000), and no
    NUL character in any text (PostgreSQL cannot store one; no field has a use for it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text may not contain the NUL character")
        return data


def _has_nul(value: Any) -> bool:
    # A loop over a stack, not recursion: every nested model runs this check on its own part
    # again, and the money path's bodies nest four deep.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Amount(Strict):
    minor: int = Field(ge=0, le=MAX_MINOR, description="integer minor units of the currency")
    currency: str = Field(pattern=CURRENCY_PATTERN, description="ISO 4217 alphabetic code")


class CardIn(Strict):
    kind: Literal["payment", "id_token"]
    token: str = Field(min_length=8, max_length=64, description="fleet-wide keyed hash")
    brand: str = Field(max_length=32)
    last4: str = Field(pattern=r"^[0-9]{0,4}$")
    expiry: str | None = Field(default=None, pattern=r"^[0-9]{4}$", description="YYMM")
    payload: dict[str, str] = Field(
        default_factory=dict, description="protected authorization data (DUKPT blob)"
    )


class AuthorizationRequest(Strict):
    authorization_id: str = Field(pattern=ID_PATTERN)
    terminal_id: str = Field(min_length=1, max_length=64)
    amount: Amount
    card: CardIn


class AuthorizationAnswer(Strict):
    authorization_id: str
    status: Literal["approved", "declined"]
    amount_authorized: Amount | None = None
    decline_reason: str | None = None


class IncrementRequest(Strict):
    """Raise an approved hold by `amount`; refused if the total would pass `ceiling` (the
    most the terminal is configured to hold for one session)."""

    amount: Amount
    ceiling: Amount


class IncrementAnswer(Strict):
    authorization_id: str
    status: Literal["approved", "declined"]
    amount_authorized: Amount | None = Field(
        default=None, description="the whole hold after the increment"
    )
    decline_reason: str | None = None


class ReceiptLine(Strict):
    # OCPI CdrDimensionType names; MIN_PRICE / MAX_PRICE are the tariff's bound adjustments,
    # LIMIT the cut to the authorized amount (the receipt totals what is captured).
    dimension: Literal["ENERGY", "TIME", "PARKING_TIME", "FLAT", "MIN_PRICE", "MAX_PRICE", "LIMIT"]
    quantity: str = Field(pattern=DECIMAL_PATTERN)
    unit: str
    excl_vat: int = Field(ge=-MAX_MINOR, le=MAX_MINOR)
    vat_percent: str = Field(pattern=DECIMAL_PATTERN)
    # What the driver was shown and billed (docs/tariffs.md, "Rounding"): the line incl. VAT
    # and its unit price incl. VAT. Optional so receipts of kiosks that send only `excl_vat`
    # stay valid; the receipt page then lists those lines excl. VAT.
    incl_vat: int | None = Field(
        default=None, ge=-MAX_MINOR, le=MAX_MINOR, description="the line incl. VAT, minor units"
    )
    unit_price: str | None = Field(
        default=None,
        pattern=DECIMAL_PATTERN,
        description="incl. VAT, major units per kWh (ENERGY), per minute (TIME, PARKING_TIME) "
        "or per session (FLAT)",
    )


class ReceiptVat(Strict):
    percent: str = Field(pattern=DECIMAL_PATTERN)
    base: int = Field(ge=-MAX_MINOR, le=MAX_MINOR)
    vat: int = Field(ge=-MAX_MINOR, le=MAX_MINOR)


class Receipt(Strict):
    receipt_id: str = Field(pattern=RECEIPT_ID_PATTERN)
    station: str
    tariff: str
    card: str
    started_at: str
    ended_at: str
    energy_wh: int = Field(ge=0, le=MAX_MINOR)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    lines: list[ReceiptLine]
    vat: list[ReceiptVat]
    total_excl_vat: int = Field(ge=0, le=MAX_MINOR)
    total: int = Field(ge=0, le=MAX_MINOR)


class CaptureRequest(Strict):
    amount: Amount
    energy_wh: int = Field(ge=0, le=MAX_MINOR)
    receipt: Receipt


class CaptureAnswer(Strict):
    authorization_id: str
    status: Literal["captured"]
    amount_captured: Amount


class RefundRequest(Strict):
    """An operator's refund of part or all of a captured payment (not a terminal route).

    `destination` is where the money goes for a processor that cannot send it back along the
    payment (`Capability.REFUND_TO_DESTINATION`): for Lightning, a BOLT11 invoice from the
    driver's wallet for the refunded amount at the payment's rate. Card processors refuse one."""

    amount: Amount
    reason: str = Field(min_length=1, max_length=200)
    destination: str | None = Field(default=None, min_length=1, max_length=2000)


class VoidRequest(Strict):
    reason: str = Field(max_length=64)


class VoidAnswer(Strict):
    authorization_id: str
    status: Literal["voided"]


class EventIn(Strict):
    key: str = Field(min_length=8, max_length=128, description="unique per terminal; kept")
    kind: str = Field(max_length=32)
    detail: str = Field(max_length=512)
    at: str


class SessionProgress(Strict):
    """A session under way as the kiosk sees it."""

    session_id: str = Field(pattern=ID_PATTERN, description="the authorization (session) id")
    energy_wh: int = Field(ge=0, le=10**9, description="delivered so far")
    cost: Amount | None = Field(default=None, description="priced so far, incl. VAT")


class TerminalStatus(Strict):
    """What the fleet page shows of a kiosk, taken when it is sent (a heartbeat)."""

    software_version: str = Field(min_length=1, max_length=64)
    queue_depth: int = Field(ge=0, le=10**9, description="requests in the outbox, unsent")
    oldest_unsent_s: int | None = Field(
        default=None, ge=0, description="how long the oldest unsent request has waited"
    )
    sessions: list[SessionProgress] = Field(default_factory=list, max_length=8)
    at: str = Field(max_length=40, description="the kiosk's clock when it took this status")


class EventsRequest(Strict):
    terminal_id: str = Field(min_length=1, max_length=64)
    events: list[EventIn] = Field(max_length=500)
    status: TerminalStatus | None = Field(
        default=None, description="the kiosk's status now (a heartbeat sends it with no events)"
    )


class EventsAnswer(Strict):
    accepted: int


class MeterReadingIn(Strict):
    session_id: str = Field(pattern=ID_PATTERN, description="the authorization (session) id")
    kind: Literal["begin", "charging", "end"]
    ocmf: str = Field(
        pattern=r"^OCMF\|",
        max_length=4096,
        description="the signed reading, OCMF|{payload}|{signature}",
    )


class MeterReadingsRequest(Strict):
    terminal_id: str = Field(min_length=1, max_length=64)
    readings: list[MeterReadingIn] = Field(min_length=1, max_length=500)


class MeterReadingsAnswer(Strict):
    accepted: int


class TerminalConfigAnswer(Strict):
    authorization_list: list[str] = Field(
        description="tokens that may start a session while the gateway is unreachable"
    )
    deny_list: list[str] = Field(description="tokens refused, online and offline")
    tariff: dict[str, Any] | None = Field(
        default=None,
        description="the OCPI 2.2.1 Tariff object the station prices with (set in the "
        "operator's console); absent when none is assigned",
    )


class CostLimit(Strict):
    minor: int = Field(gt=0, le=10**12)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class Command(Strict):
    """A command for a terminal. "start": a session paid on the web, with the hold of
    `session_id` (an authorization id) as its cost limit, not to begin once `expires_in_ms`
    have passed since it was received; "stop": stop that session."""

    command_id: str = Field(pattern=ID_PATTERN)
    kind: Literal["start", "stop"]
    session_id: str = Field(pattern=ID_PATTERN, description="the authorization (session) id")
    cost_limit: CostLimit | None = None
    expires_in_ms: int | None = Field(
        default=None, ge=0, description="a start may begin for this long from now, no longer"
    )
    brand: str | None = Field(default=None, max_length=32)
    last4: str | None = Field(default=None, pattern=r"^[0-9]{0,4}$")


class CommandsAnswer(Strict):
    commands: list[Command]
    pay_code: Literal["open", "spent"] | None = Field(
        default=None, description="whether the code the terminal shows may still be paid"
    )


class PayCodeRequest(Strict):
    """What a terminal's idle screen offers, for the payment page its QR code opens."""

    terminal_id: str = Field(min_length=1, max_length=64)
    station: str = Field(min_length=1, max_length=200)
    hold: CostLimit
    language: str = Field(pattern=r"^[a-z]{2}$")
    price: dict[str, list[str]] = Field(
        min_length=1, max_length=20, description="the price lines in each language"
    )


class PayCodeAnswer(Strict):
    code: str
    url: str
    expires_in_ms: int


class LinkCodeRequest(Strict):
    """A code for the driver who just tapped at the kiosk, to link that card or token to an
    account on the portal (`gateway.ledger.link_codes`)."""

    terminal_id: str = Field(min_length=1, max_length=64)
    authorization_id: str = Field(pattern=ID_PATTERN)


class LinkCodeAnswer(Strict):
    code: str = Field(
        pattern=r"^[0-9A-HJKMNP-TV-Z]{8}$", description="Crockford base32; shown as XXXX-XXXX"
    )
    expires_in_ms: int = Field(gt=0)


class CommandAnswer(Strict):
    """A terminal's answer to a command: a start "started" or "not_started" (then the hold
    is released), a stop "received"."""

    session_id: str = Field(pattern=ID_PATTERN)
    status: Literal["started", "not_started", "received"]
    reason: str = Field(default="", max_length=64)


class CommandAnswerAnswer(Strict):
    command_id: str
    authorization_id: str
    status: Literal["answered"]


class OpenAuthorization(Strict):
    authorization_id: str
    status: Literal["approved", "pending"] = Field(
        description="approved: a hold in force; pending: the hold is being asked for"
    )
    amount: Amount = Field(description="what is held (or asked for, while pending)")
    created_at: str


class OpenAuthorizationsAnswer(Strict):
    """A terminal's holds still open at the gateway, and the newest authorization it sent:
    what its kiosk checks its journal against at start-up."""

    terminal_id: str
    authorizations: list[OpenAuthorization]
    newest_authorization_id: str | None = Field(
        description="the last authorization the gateway saw from this terminal"
    )


class ErrorBody(Strict):
    code: str
    message: str


class ErrorAnswer(Strict):
    error: ErrorBody
