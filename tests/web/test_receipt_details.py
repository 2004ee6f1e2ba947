"""The driver's receipt page with what the station registry adds: the station's name and
address, the seller's name and VAT number, start and end in the station's time zone with the
duration, the kiosk's rows (each line with its unit price, VAT per rate, the total = the
capture), card brand and last four, refunds, and the signed meter readings with their
download, which pyocmf (an independent OCMF reader that reads the S.A.F.E. transparency
software's XML) verifies against the station's key. The registry is edited in the console by
an admin only, each change audited; bad input names its field and changes nothing."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from pyocmf import OcmfContainer

from gateway.ledger import station_registry
from terminal.money import Money
from tests.web.console_app import console_app, form_token
from tests.web.receipt_sessions import (
    captured,
    key_hex,
    post_readings,
    refund,
    register,
    signer,
)

SELLER = ("ACME", "ACME Laden GmbH", "Hafenstraße 1, 20457 Hamburg", "de 123 456 789")
BERLIN = {
    "terminal_id": "KIOSK-0100",
    "name": "Marktplatz Ladesäule 2",
    "site": "Musterstadt",
    "address": "Marktplatz 12, 12345 Musterstadt",
    "timezone": "Europe/Berlin",
    "cpo_id": "ACME",
}


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_the_receipt_page_shows_station_seller_local_times_money_and_readings(
    db_url: str, tmp_path: Path
) -> None:
    app = console_app(db_url)
    app.add("alice")
    admin = app.signed_in("alice")
    keys = tmp_path / "keys"
    sign = signer(keys, "KIOSK-0100")
    assert register(admin, cpo=SELLER)[0] == 303
    assert register(admin, station={**BERLIN, "ocmf_public_key": key_hex(keys)})[0] == 303
    session = captured(app, 1, "KIOSK-0100")
    texts = post_readings(app, session, sign)
    refund(app, session, 300, "refund-1")

    page = app.client().get(f"/receipts/{session.receipt_id}")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    text = text_of(page.text)
    for shown in (
        "Marktplatz Ladesäule 2",
        "Marktplatz 12, 12345 Musterstadt",
        "ACME Laden GmbH",
        "Hafenstraße 1, 20457 Hamburg",
        "VAT number: DE123456789",
        "Started 02/03/2026, 10:00",  # 09:00 UTC is 10:00 in Berlin in March (CET)
        "Ended 02/03/2026, 10:47",
        "Time zone Europe/Berlin",
        "Duration 0:47:30",
        "Energy 21.34 kWh",  # the kiosk's receipt row: kWh to 2 places (21.345 half-even)
        "Card Visa **** 4242",
        "Total 13.10 EUR",
        "Refunded 3.00 EUR",
        "Paid after refunds 10.10 EUR",
        "Meter reading at the start",
        "1000.000 kWh",
        "1021.345 kWh",
    ):
        assert shown in text, (shown, text)
    # The kiosk's rows: each line with its unit price, VAT per rate on its base.
    for row in ("0.52", "VAT 19% on", "VAT 7% on", "Excl. VAT"):
        assert row in text, row
    captured_minor = app.built.ledger.fetch(session.aid).amount_captured  # type: ignore[union-attr]
    assert Money(captured_minor, "EUR").format() == "13.10 EUR" == session.total.format()

    xml = app.client().get(f"/receipts/{session.receipt_id}/readings.xml")
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/xml")
    assert "attachment" in xml.headers["content-disposition"]
    path = tmp_path / "readings.xml"
    path.write_bytes(xml.content)
    container = OcmfContainer.from_xml(path)
    assert [r.context for r in container] == ["Transaction.Begin", "Transaction.End"]
    assert all(r.verify_signature() for r in container)
    [result] = container.check_eichrecht(errors_only=True)
    assert result.is_compliant, result.issues
    assert [r.ocmf.payload.PG for r in container] == ["T1", "T2"]
    assert len(texts) == 2


def test_readings_not_yet_arrived_and_a_station_without_registry_entry(db_url: str) -> None:
    app = console_app(db_url)
    session = captured(app, 2, "KIOSK-UNREGISTERED")
    text = text_of(app.client().get(f"/receipts/{session.receipt_id}").text)
    assert "KIOSK-UNREGISTERED" in text
    assert "Time zone UTC" in text and "Started 02/03/2026, 09:00" in text
    assert "The signed meter readings have not arrived yet." in text
    assert "Invoices are not available for this charger yet." in text
    assert app.client().get(f"/receipts/{session.receipt_id}/invoice.pdf").status_code == 409
    # The way to the account's cards (where the kiosk's link code is typed).
    assert (
        'id="link-card" href="/account/cards"'
        in app.client().get(f"/receipts/{session.receipt_id}").text
    )


def test_the_receipt_page_speaks_the_drivers_language_in_the_stations_zone(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    admin = app.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, station=BERLIN)
    session = captured(app, 3, "KIOSK-0100")
    text = text_of(app.client().get(f"/receipts/{session.receipt_id}?lang=de").text)
    for shown in ("Beginn 02.03.26, 10:00", "Zeitzone Europe/Berlin", "USt-IdNr.: DE123456789"):
        assert shown in text, (shown, text)


def test_only_an_admin_changes_the_registry_and_bad_input_names_the_field(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role="read_only")
    admin = app.signed_in("alice")
    assert register(admin, cpo=SELLER)[0] == 303
    for bad, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"cpo_id": "NOPE"}, "cpo_id"),
        ({"ocmf_public_key": "00ff"}, "ocmf_public_key"),
        ({"name": " "}, "name"),
    ):
        status, body = register(admin, station={**BERLIN, **bad})
        assert status == 400, bad
        assert f"Station not saved: {field}:" in unescape(body), (bad, body[:300])
    assert station_registry.station_list(app.built.engine) == []
    status, body = register(admin, cpo=("ACME", "ACME", "Somewhere", "12345"))
    assert status == 400 and "Operator not saved: vat_id:" in unescape(body)
    assert station_registry.cpo_list(app.built.engine)[0].vat_id == "DE123456789"
    assert register(admin, station=BERLIN)[0] == 303
    reader = app.signed_in("reader")
    assert "Save the station" not in reader.get("/console/stations").text
    status, body = register(reader, station={**BERLIN, "name": "Changed"})
    assert status == 403 and "read-only" in body
    assert station_registry.station(app.built.engine, "KIOSK-0100").name == BERLIN["name"]
    actions = [(e["action"], e["target"], e["actor"]) for e in app.operators.audit_entries()]
    assert ("cpo.save", "ACME", "alice") in actions
    assert ("station.save", "KIOSK-0100", "alice") in actions
    assert len([a for a in actions if a[0] in ("cpo.save", "station.save")]) == 2


def test_an_admin_edits_a_registered_station_from_its_prefilled_form(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role="read_only")
    admin = app.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, station=BERLIN)
    captured(app, 4, "KIOSK-HEARD-ONLY")  # a terminal heard from, not registered:
    ledger = app.built.ledger  # it charged, and it reports (the fleet page's members)
    with ledger.engine.begin() as conn:
        ledger.add_events(conn, "KIOSK-HEARD-ONLY", [("heard-1", "started", "unsettled=0")])
    page = admin.get("/console/stations").text
    assert 'href="/console/stations?edit=KIOSK-0100#station-form"' in page
    assert 'href="/console/stations?edit=KIOSK-HEARD-ONLY#station-form"' in page
    assert 'href="/console/stations?operator=ACME#cpo-form"' in page
    form = admin.get("/console/stations?edit=KIOSK-0100").text
    for value in BERLIN.values():
        if value != "ACME":
            assert f'value="{value}"' in form, value
    assert '<option value="ACME" selected>' in form
    fields = dict(re.findall(r'<input name="(\w+)"[^>]*value="([^"]*)"', form))
    fields["timezone"] = "Europe/Paris"
    token = form_token(form)
    answer = admin.post(
        "/console/stations",
        data={**fields, "cpo_id": "ACME", "ocmf_public_key": "", "csrf": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    saved = station_registry.station(app.built.engine, "KIOSK-0100")
    assert (saved.name, saved.address, saved.timezone) == (
        BERLIN["name"],
        BERLIN["address"],
        "Europe/Paris",
    )
    assert 'value="KIOSK-HEARD-ONLY"' in admin.get("/console/stations?edit=KIOSK-HEARD-ONLY").text
    operator = admin.get("/console/stations?operator=ACME").text
    assert 'value="DE123456789"' in operator and 'value="ACME Laden GmbH"' in operator
    assert "?edit=" not in app.signed_in("reader").get("/console/stations").text
