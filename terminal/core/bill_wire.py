"""A bill in the wire receipt (`Receipt` in contract/openapi.json) and back, exactly: money
as integer minor units, quantities, rates and unit prices as decimal strings (never float).

The kiosk writes it into each capture's receipt; the gateway reads it back to show the
receipt page with the kiosk's own rows (`screens.receipt_fields`), and the kiosk's sender
reads it back to cut a receipt down to what the gateway approved (a late partial approval of
a session started offline), so every receipt totals what is captured.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from terminal.core.billing import Bill, BillLine, VatLine
from terminal.money import Money

__all__ = ["bill_from_wire", "bill_to_wire"]


def bill_to_wire(bill: Bill) -> dict[str, Any]:
    """The receipt's bill fields: `lines`, `vat`, `total_excl_vat`, `total`."""
    return {
        "lines": [
            {
                "dimension": line.dimension,
                "quantity": f"{line.quantity.normalize():f}",
                "unit": line.unit,
                "excl_vat": line.excl_vat.minor,
                "vat_percent": f"{line.vat_percent.normalize():f}",
                "incl_vat": line.incl_vat.minor,
                **({} if line.unit_price is None else {"unit_price": f"{line.unit_price:f}"}),
            }
            for line in bill.lines
        ],
        "vat": [
            {"percent": f"{v.percent.normalize():f}", "base": v.base.minor, "vat": v.vat.minor}
            for v in bill.vat
        ],
        "total_excl_vat": bill.total_excl_vat.minor,
        "total": bill.total.minor,
    }


def bill_from_wire(receipt: Mapping[str, Any], currency: str) -> Bill | None:
    """The bill of a wire receipt, or None when a line lacks `incl_vat` (the receipt of a
    kiosk that sent lines excl. VAT only: the line's price incl. VAT cannot be recovered)."""
    lines = receipt["lines"]
    if any(line.get("incl_vat") is None for line in lines):
        return None
    return Bill(
        lines=tuple(
            BillLine(
                dimension=line["dimension"],
                quantity=Decimal(line["quantity"]),
                unit=line["unit"],
                incl_vat=Money(line["incl_vat"], currency),
                vat_percent=Decimal(line["vat_percent"]),
                unit_price=None if line.get("unit_price") is None else Decimal(line["unit_price"]),
                excl_vat=Money(line["excl_vat"], currency),
            )
            for line in lines
        ),
        vat=tuple(
            VatLine(
                percent=Decimal(v["percent"]),
                base=Money(v["base"], currency),
                vat=Money(v["vat"], currency),
            )
            for v in receipt["vat"]
        ),
        total_excl_vat=Money(receipt["total_excl_vat"], currency),
        total=Money(receipt["total"], currency),
    )
