"""The console's tariffs: an OCPI tariff is validated by the kiosk's parser (the field named),
previewed with the kiosk's price engine, assigned to stations, and served to those terminals in
`GET /v1/terminal-config` under a new ETag; a read-only operator sees and previews but changes
nothing. Both back-ends."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.web.console_app import console_app, form_token

ROOT = Path(__file__).resolve().parents[2]
TOU = (ROOT / "deploy" / "tariffs" / "time-of-day-with-idle-fee.json").read_text()
SIMPLE = (ROOT / "deploy" / "tariffs" / "simple-per-kwh.json").read_text()


def test_a_tariff_is_validated_previewed_assigned_and_served(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role="read_only")
    admin = app.signed_in("alice")
    page = admin.get("/console/tariffs").text
    broken = json.loads(SIMPLE)
    broken["currency"] = "EURO"
    refused = admin.post(
        "/console/tariffs", data={"csrf": form_token(page), "ocpi": json.dumps(broken)}
    )
    assert refused.status_code == 400
    assert "currency" in refused.text
    assert (
        admin.post(
            "/console/tariffs", data={"csrf": form_token(page), "ocpi": "{not json"}
        ).status_code
        == 400
    )
    saved = admin.post(
        "/console/tariffs", data={"csrf": form_token(page), "ocpi": TOU}, follow_redirects=False
    )
    assert saved.status_code == 303
    tariff_id = json.loads(TOU)["id"]
    assert saved.headers["location"] == f"/console/tariffs/{tariff_id}"

    # The preview is the kiosk's own price: the same engine `ev-terminal price` runs.
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from terminal.tariff.cli import render
    from terminal.tariff.engine import ChargingPeriod, OcpiTariff
    from terminal.tariff.model import parse_tariff

    query = "preview=1&start=2026-03-02T18:30&tz=Europe/Berlin&kwh=22.5&minutes=90&idle=45"
    shown = admin.get(f"/console/tariffs/{tariff_id}?{query}")
    assert shown.status_code == 200
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 2, 18, 30, tzinfo=zone)
    engine = OcpiTariff(document=parse_tariff(TOU.encode()), tz=zone)
    periods = [
        ChargingPeriod(
            start=start, energy_wh=22500, power_w=22500 * 3600 // 5400, current_ma=0, charging=True
        ),
        ChargingPeriod(
            start=start + timedelta(minutes=90),
            energy_wh=0,
            power_w=0,
            current_ma=0,
            charging=False,
        ),
    ]
    bill = render(
        engine, engine.price(start=start, periods=periods, end=start + timedelta(minutes=135))
    )
    total = re.search(r'data-fact="total">([^<]+)<', shown.text)
    assert total is not None
    minor = bill["total_incl_vat"]["minor"]
    assert total.group(1) == f"{minor // 100}.{minor % 100:02d} {bill['currency']}"
    assert admin.get(f"/console/tariffs/{tariff_id}?preview=1&kwh=lots").status_code == 400

    config = app.client().get("/v1/terminal-config?terminal_id=KIOSK-0007")
    assert "tariff" not in config.json()
    etag = config.headers["etag"]
    # Stations the console knows (they have sent something).
    with app.built.ledger.engine.begin() as conn:
        app.built.ledger.add_events(conn, "KIOSK-0007", [("ev-7", "started", "unsettled=0")])
        app.built.ledger.add_events(conn, "KIOSK-0008", [("ev-8", "started", "unsettled=0")])
    page = admin.get(f"/console/tariffs/{tariff_id}").text
    assigned = admin.post(
        f"/console/tariffs/{tariff_id}/stations",
        data={"csrf": form_token(page), "terminal": ["KIOSK-0007"]},
        follow_redirects=False,
    )
    assert assigned.status_code == 303
    unchanged = app.client().get(
        "/v1/terminal-config?terminal_id=KIOSK-0007", headers={"If-None-Match": etag}
    )
    assert unchanged.status_code == 200  # the tariff changed the document, so a new ETag
    assert unchanged.headers["etag"] != etag
    assert unchanged.json()["tariff"] == json.loads(TOU)
    assert "tariff" not in app.client().get("/v1/terminal-config?terminal_id=KIOSK-0008").json()
    again = app.client().get(
        "/v1/terminal-config?terminal_id=KIOSK-0007",
        headers={"If-None-Match": unchanged.headers["etag"]},
    )
    assert again.status_code == 304
    bogus = admin.post(
        f"/console/tariffs/{tariff_id}/stations",
        data={"csrf": form_token(page), "terminal": ["NOT-A-KIOSK"]},
    )
    assert bogus.status_code == 400
    actions = [e["action"] for e in app.operators.audit_entries()]
    assert "tariff.save" in actions and "tariff.assign" in actions

    reader = app.signed_in("reader")
    page = reader.get(f"/console/tariffs/{tariff_id}?{query}").text
    assert "Assign" not in page
    assert total.group(1) in page
    assert (
        reader.post("/console/tariffs", data={"csrf": form_token(page), "ocpi": SIMPLE}).status_code
        == 403
    )
    assert (
        reader.post(
            f"/console/tariffs/{tariff_id}/stations",
            data={"csrf": form_token(page), "terminal": ["KIOSK-0008"]},
        ).status_code
        == 403
    )
    assert "tariff" not in app.client().get("/v1/terminal-config?terminal_id=KIOSK-0008").json()
