"""Captured sessions for the receipt and invoice tests, through the gateway's real money steps
(hold, capture, refund) with a receipt the kiosk's own billing made, and signed meter readings
from the kiosk's own signer posted to `/v1/meter-readings`; and the station registry filled
through the console's forms, as an admin would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gateway import wire
from gateway.payments import Payments
from terminal.core.bill_wire import bill_to_wire
from terminal.core.billing import Bill, BillLine, make_bill
from terminal.money import Money
from terminal.shell.signed_readings import MeterIdentity, ReadingSigner, public_key_der
from tests.web.console_app import Clock, ConsoleApp, form_token

# 2 March 2026, 09:00 UTC = 10:00 in Berlin (CET, UTC+1).
STARTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ENDED = STARTED + timedelta(minutes=47, seconds=30)
ENERGY_WH = 21_345


def _store(_conn: Any, _answer: Any) -> None:
    """The money steps store the request's answer for its idempotency key; there is none."""


def kiosk_bill() -> Bill:
    """A bill as the kiosk makes it: a session fee and energy at 19 %, idle time at 7 %."""

    def line(dim: str, qty: str, unit: str, minor: int, price: str, *, vat: int) -> BillLine:
        return BillLine(
            dimension=dim,
            quantity=Decimal(qty),
            unit=unit,
            incl_vat=Money(minor, "EUR"),
            vat_percent=Decimal(vat),
            unit_price=Decimal(price),
        )

    return make_bill(
        [
            line("FLAT", "1", "session", 50, "0.50", vat=19),
            line("ENERGY", "21.345", "kWh", 1110, "0.52", vat=19),
            line("PARKING_TIME", "0.25", "h", 150, "0.10", vat=7),
        ],
        "EUR",
    )


@dataclass(frozen=True, slots=True)
class Session:
    aid: str
    receipt_id: str
    terminal: str
    total: Money
    receipt: dict[str, Any]


def captured(
    app: ConsoleApp, n: int, terminal: str, *, token: str = "", bill: Bill | None = None
) -> Session:
    """Session `n` at `terminal`, held and captured through the ledger's money steps."""
    return capture_session(app.built.payments, app.clock, n, terminal, token=token, bill=bill)


def capture_session(
    payments: Payments,
    clock: Clock,
    n: int,
    terminal: str,
    *,
    token: str = "",
    bill: Bill | None = None,
) -> Session:
    bill = bill or kiosk_bill()
    aid, receipt_id = f"rcpt-session-{n:04d}", f"RCPT{n:04d}ABCDEFGH"
    clock.now = STARTED
    held = payments.authorize(
        wire.AuthorizationRequest(
            authorization_id=aid,
            terminal_id=terminal,
            amount=wire.Amount(minor=5000, currency="EUR"),
            card=wire.CardIn(
                kind="payment", token=token or f"tok-receipt-{n:06d}", brand="Visa", last4="4242"
            ),
        ),
        _store,
    )
    assert held.body["status"] == "approved", held.body
    clock.now = ENDED + timedelta(seconds=5)
    receipt = {
        "receipt_id": receipt_id,
        "station": terminal,
        "tariff": "Standard 0.52",
        "card": "Visa **** 4242",
        "started_at": STARTED.isoformat(),
        "ended_at": ENDED.isoformat(),
        "energy_wh": ENERGY_WH,
        "currency": "EUR",
        **bill_to_wire(bill),
    }
    done = payments.capture(
        aid,
        wire.CaptureRequest(
            amount=wire.Amount(minor=bill.total.minor, currency="EUR"),
            energy_wh=ENERGY_WH,
            receipt=wire.Receipt.model_validate(receipt),
        ),
        _store,
    )
    assert done.body["status"] == "captured", done.body
    return Session(aid, receipt_id, terminal, bill.total, receipt)


def refund(app: ConsoleApp, session: Session, minor: int, key: str) -> None:
    answer = app.built.payments.refund(
        session.aid,
        wire.RefundRequest(amount=wire.Amount(minor=minor, currency="EUR"), reason="test"),
        key,
        _store,
    )
    assert answer.status_code == 200, answer.body


def signer(key_dir: Path, terminal: str) -> ReadingSigner:
    key_dir.mkdir(parents=True, exist_ok=True)
    return ReadingSigner(
        key_dir,
        terminal_id=terminal,
        charge_point="DE*EVT*E0001",
        meter=MeterIdentity(vendor="ev-terminal", model="sim", serial="SIM-0001"),
    )


def signed_readings(session: Session, sign: ReadingSigner) -> tuple[list[str], dict[str, Any]]:
    """The session's begin and end readings, signed by the kiosk's signer, and the body the
    kiosk's uplink sends them in."""
    texts = [
        sign.sign(
            kind=kind, register_wh=register, at=at, token="tok-receipt", tariff_text="Standard"
        )
        for kind, register, at in (
            ("begin", 1_000_000, STARTED),
            ("end", 1_000_000 + ENERGY_WH, ENDED),
        )
    ]
    body = {
        "terminal_id": session.terminal,
        "readings": [
            {"session_id": session.aid, "kind": kind, "ocmf": text}
            for kind, text in zip(("begin", "end"), texts, strict=True)
        ],
    }
    return texts, body


def post_readings(app: ConsoleApp, session: Session, sign: ReadingSigner) -> list[str]:
    """The session's readings, sent to `/v1/meter-readings` as the kiosk's uplink sends them;
    their OCMF strings."""
    texts, body = signed_readings(session, sign)
    answer = app.client("127.0.0.1").post(
        "/v1/meter-readings", json=body, headers={"Idempotency-Key": f"readings-{session.aid}"}
    )
    assert answer.status_code == 200, answer.text
    return texts


def key_hex(key_dir: Path) -> str:
    return public_key_der(key_dir).hex().upper()


def register(
    admin: TestClient,
    *,
    cpo: tuple[str, str, str, str] | None = None,
    station: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Save an operator (id, name, address, VAT) and/or a station through the console's forms;
    the last answer's status and text."""
    answer = None
    if cpo is not None:
        token = form_token(admin.get("/console/stations").text)
        cpo_id, name, address, vat = cpo
        answer = admin.post(
            "/console/stations/operators",
            data={"csrf": token, "cpo_id": cpo_id, "name": name, "address": address, "vat_id": vat},
            follow_redirects=False,
        )
    if station is not None:
        token = form_token(admin.get("/console/stations").text)
        answer = admin.post(
            "/console/stations", data={"csrf": token, **station}, follow_redirects=False
        )
    assert answer is not None
    return answer.status_code, answer.text
