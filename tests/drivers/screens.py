"""One example of every screen, rendered into frames, for the display renderers' tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hardware.ports import Frame
from terminal.core import screens
from terminal.core.billing import EnergyMeterage, EnergyTariff
from terminal.money import Money

TARIFF = EnergyTariff(
    name="Standard AC", currency="EUR", per_kwh=Decimal("0.3277"), vat_percent=Decimal(19)
)
RECEIPT_URL = "http://127.0.0.1:8080/receipts/R-20260115-0001"


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def example_screens() -> list[screens.Screen]:
    at = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    bill = EnergyMeterage(tariff=TARIFF, energy_wh=12_345).bill()
    return [
        screens.Idle(price=TARIFF.price_phrases(at)),
        screens.WebPayment(),
        screens.Authorizing(card="VISA **** 0010"),
        screens.Declined(reason="declined"),
        screens.NoAnswer(),
        screens.PlugIn(authorized=eur(5000), connected=False),
        screens.Charging(
            energy_wh=12_345, cost=eur(481), cap=eur(5000), power_w=11_040, elapsed_s=4_021
        ),
        screens.Suspended(energy_wh=12_345, cost=eur(481)),
        screens.Stopping(reason="card"),
        screens.Receipt(
            receipt_id="R-20260115-0001",
            url=RECEIPT_URL,
            station="Example Street 1, Charger 1",
            tariff=TARIFF.name,
            card="VISA **** 0010",
            started_at="2026-01-15T09:00:00+00:00",
            ended_at="2026-01-15T10:07:01+00:00",
            energy_wh=12_345,
            bill=bill,
            total=bill.total,
            end_reason="card",
        ),
        screens.Notice(kind="tap-again"),
        screens.Notice(kind="reserved"),
        screens.Unavailable(reasons=("rcd_trip",)),
        screens.Starting(),
    ]


def example_frames() -> list[Frame]:
    return [screens.frame_for(screen) for screen in example_screens()]
