"""What a screen costs the daemon: rendering a frame in four languages, and its page JSON.

    python -m bench.bench_screens

While charging, the machine shows a new Charging screen with every meter sample (once a
second): the shell renders it in the station's language plus the three others
(`frames_for`) and the web display turns it into the JSON it streams. Prints the time per
charging frame and per receipt frame (QR code cached after the first), and their JSON sizes,
beside the English-only rendering for comparison; and what the gateway's receipt page (the
QR code's target, gateway/web/) costs per request in each language, and its size."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from drivers.display_web import frame_json
from gateway.web.languages import LANGUAGES, page_words
from gateway.web.receipt_more import ReceiptMore, Row
from gateway.web.receipts import receipt_page
from gateway.web.templating import Pages
from terminal.core import screens
from terminal.core.bill_wire import bill_to_wire
from terminal.core.billing import EnergyMeterage, EnergyTariff
from terminal.core.screens import frame_for, frames_for
from terminal.i18n import station_words
from terminal.money import Money

ROUNDS = 2_000


def per_call_us(work: Callable[[], object]) -> float:
    work()  # warm caches (catalogs, CLDR data, the QR code)
    began = time.perf_counter()
    for _ in range(ROUNDS):
        work()
    return (time.perf_counter() - began) / ROUNDS * 1e6


def examples() -> dict[str, screens.Screen]:
    tariff = EnergyTariff(
        name="Standard AC", currency="EUR", per_kwh=Decimal("0.3277"), vat_percent=Decimal(19)
    )
    bill = EnergyMeterage(tariff=tariff, energy_wh=12_345).bill()
    at = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    return {
        "Charging": screens.Charging(
            energy_wh=12_345,
            cost=Money(481, "EUR"),
            cap=Money(5000, "EUR"),
            power_w=11_040,
            elapsed_s=4_021,
        ),
        "Receipt": screens.Receipt(
            receipt_id="7QK2M4XR9TB3WZ5N",
            url="https://gateway.example/receipts/7QK2M4XR9TB3WZ5N",
            station="Example Street 1, Charger 1",
            tariff=tariff.name,
            card="VISA **** 0010",
            started_at=at.isoformat(),
            ended_at=at.replace(hour=10).isoformat(),
            energy_wh=12_345,
            bill=bill,
            total=bill.total,
            end_reason="card",
        ),
    }


def main() -> None:
    first, every = station_words("de", ZoneInfo("Europe/Berlin"))
    for name, screen in examples().items():
        english = per_call_us(lambda screen=screen: frame_for(screen))
        four = per_call_us(lambda screen=screen: frames_for(screen, first, every))
        page = per_call_us(lambda screen=screen: frame_json(frames_for(screen, first, every), 1))
        size = len(json.dumps(frame_json(frames_for(screen, first, every), 1)))
        print(
            f"{name:<9} frame_for (English) {english:7.1f} us | frames_for (4 languages) "
            f"{four:7.1f} us | + page JSON {page:7.1f} us, {size / 1024:.1f} KiB"
        )
    receipt = examples()["Receipt"]
    assert isinstance(receipt, screens.Receipt) and receipt.bill is not None
    stored = {
        "receipt_id": receipt.receipt_id,
        "station": receipt.station,
        "tariff": receipt.tariff,
        "card": receipt.card,
        "started_at": receipt.started_at,
        "ended_at": receipt.ended_at,
        "energy_wh": receipt.energy_wh,
        "currency": "EUR",
        **bill_to_wire(receipt.bill),
    }
    path = f"/receipts/{receipt.receipt_id}"
    pages = Pages()
    for language in LANGUAGES:

        def render(language: str = language) -> bytes:
            words = page_words(language, ZoneInfo("Europe/Berlin"))
            page = receipt_page(stored, words, zone="Europe/Berlin")
            # The registry's part as a registered station with a seller and no readings yet
            # (bench_invoices measures the page with its snapshot query).
            more = ReceiptMore(
                station=receipt.station,
                address="Example Street 1, 12345 Example",
                seller=("ACME Laden GmbH", "Hafenstraße 1, 20457 Hamburg", "DE123456789"),
                times=(
                    Row(
                        words.text("Started"),
                        words.when(datetime.fromisoformat(receipt.started_at)),
                    ),
                    Row(words.text("Ended"), words.when(datetime.fromisoformat(receipt.ended_at))),
                ),
                refunds=(),
                readings=(),
                public_key="",
                readings_href=f"{path}/readings.xml",
                invoices=(),
                invoice_href=f"{path}/invoice.pdf?lang={language}",
                business_action=f"{path}/invoice?lang={language}",
            )
            answer = pages.render_page(
                "receipt.html",
                path=path,
                language=language,
                words=words,
                page=page,
                more=more,
                csrf="x" * 43,
                error="",
            )
            return bytes(answer.body)

        us = per_call_us(render)
        print(
            f"receipt page ({language}, gateway) {us:7.1f} us per request, "
            f"{len(render()) / 1024:.1f} KiB HTML"
        )


if __name__ == "__main__":
    main()
