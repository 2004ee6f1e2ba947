"""What the driver's receipt page and invoices cost the gateway (SQLite file, one process):

    python -m bench.bench_invoices

Prints, per request: the receipt page with its registry, readings and invoice sections (the
snapshot query and the rendering, as the route does them); the readings' XML for the
transparency software; issuing an invoice (the numbering transaction); making its PDF (fpdf2,
DejaVu Sans subset; once per invoice, then it is stored); and a stored invoice's download."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway import wire
from gateway.ledger import migrate, open_engine
from gateway.ledger.invoice_schema import SIMPLE
from gateway.ledger.invoice_store import document_pdf, issue
from gateway.ledger.receipt_view import receipt_snapshot
from gateway.ledger.station_registry import put_cpo, put_station
from gateway.server import Settings, build
from gateway.web import invoice_pdf
from gateway.web.invoices import compose
from gateway.web.languages import page_words
from gateway.web.receipt_more import receipt_more
from gateway.web.receipts import receipt_page
from gateway.web.templating import Pages
from gateway.web.transparency import transparency_xml
from terminal.core.bill_wire import bill_to_wire
from terminal.core.billing import BillLine, make_bill
from terminal.money import Money

SESSIONS = 200
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _no_audit(*_args: Any) -> None:
    """The bench's registry changes are not audited."""


def _store(_conn: Any, _answer: Any) -> None:
    """No idempotency key to store an answer under."""


def timed(work: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and p95 of `rounds` calls, in milliseconds."""
    work()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'gateway.sqlite3'}"
        engine = open_engine(url)
        migrate(engine)
        engine.dispose()
        built = build(Settings(db_url=url, insecure_dev=True))
        engine = built.engine
        put_cpo(
            engine,
            cpo_id="ACME",
            name="ACME Laden GmbH",
            address="Hafenstraße 1, 20457 Hamburg",
            vat="DE123456789",
            audit=_no_audit,
            actor="bench",
        )
        put_station(
            engine,
            terminal_id="KIOSK-0001",
            name="Marktplatz 2",
            site="Musterstadt",
            address="Marktplatz 12, 12345 Musterstadt",
            timezone="Europe/Berlin",
            cpo_id="ACME",
            ocmf_public_key="",
            audit=_no_audit,
            actor="bench",
        )
        bill = make_bill(
            [
                BillLine(
                    dimension="ENERGY",
                    quantity=Decimal("21.345"),
                    unit="kWh",
                    incl_vat=Money(1110, "EUR"),
                    vat_percent=Decimal(19),
                    unit_price=Decimal("0.52"),
                )
            ],
            "EUR",
        )
        receipts = []
        for n in range(SESSIONS):
            aid, receipt_id = f"bench-{n:06d}", f"BENCH{n:06d}ABCDEF"
            built.payments.authorize(
                wire.AuthorizationRequest(
                    authorization_id=aid,
                    terminal_id="KIOSK-0001",
                    amount=wire.Amount(minor=5000, currency="EUR"),
                    card=wire.CardIn(
                        kind="payment", token=f"tok-bench-{n:06d}", brand="Visa", last4="4242"
                    ),
                ),
                _store,
            )
            receipt = {
                "receipt_id": receipt_id,
                "station": "KIOSK-0001",
                "tariff": "Standard",
                "card": "Visa **** 4242",
                "started_at": AT.isoformat(),
                "ended_at": (AT + timedelta(minutes=40)).isoformat(),
                "energy_wh": 21_345,
                "currency": "EUR",
                **bill_to_wire(bill),
            }
            built.payments.capture(
                aid,
                wire.CaptureRequest(
                    amount=wire.Amount(minor=1110, currency="EUR"),
                    energy_wh=21_345,
                    receipt=wire.Receipt.model_validate(receipt),
                ),
                _store,
            )
            receipts.append(receipt_id)
        pages = Pages()

        def page(receipt_id: str = receipts[0]) -> bytes:
            snapshot = receipt_snapshot(engine, receipt_id)
            assert snapshot is not None
            words = page_words("de", snapshot.station.zone)
            path = f"/receipts/{receipt_id}"
            answer = pages.render_page(
                "receipt.html",
                path=path,
                language="de",
                words=words,
                page=receipt_page(snapshot.receipt, words, zone=snapshot.station.timezone),
                more=receipt_more(snapshot, words, path=path, language="de"),
                csrf="x" * 43,
                error="",
            )
            return bytes(answer.body)

        median, p95 = timed(page, 300)
        print(f"receipt page (de, registry, invoices): median {median:.2f} ms, p95 {p95:.2f} ms")
        median, p95 = timed(
            lambda: transparency_xml(receipt_snapshot(engine, receipts[0]).readings, ""),  # type: ignore[union-attr]
            300,
        )
        print(f"readings XML: median {median:.2f} ms, p95 {p95:.2f} ms")

        issued: list[int] = []
        remaining = iter(receipts)

        def issue_one() -> None:
            snapshot = receipt_snapshot(engine, next(remaining))
            assert snapshot is not None
            words = page_words("en", snapshot.station.zone)
            shown = receipt_page(snapshot.receipt, words)
            issued.append(
                issue(
                    engine,
                    authorization_id=snapshot.authorization_id,
                    kind=SIMPLE,
                    at=AT,
                    compose=compose(
                        snapshot,
                        shown.rows,
                        shown.total,
                        words,
                        language="en",
                        buyer=None,
                    ),
                )
            )

        median, p95 = timed(issue_one, SESSIONS // 2 - 1)
        print(f"issue an invoice (number, content): median {median:.2f} ms, p95 {p95:.2f} ms")
        made = iter(issued)
        median, p95 = timed(lambda: document_pdf(engine, next(made), invoice_pdf.render), 40)
        size = len(document_pdf(engine, issued[0], invoice_pdf.render) or b"")
        print(
            f"make and store its PDF: median {median:.1f} ms, p95 {p95:.1f} ms, "
            f"{size / 1024:.1f} KiB"
        )
        median, p95 = timed(lambda: document_pdf(engine, issued[0], invoice_pdf.render), 300)
        print(f"download a stored invoice: median {median:.2f} ms, p95 {p95:.2f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
