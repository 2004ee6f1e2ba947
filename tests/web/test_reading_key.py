"""The receipt's signed readings are checked against the key `provision` recorded for the
kiosk (`gateway/fleet.json`, `ocmf_keys`) when the station registry has none typed in: the
page shows it and the transparency software's download carries it; pyocmf verifies the
readings against it. A key typed into the registry still wins."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pyocmf import OcmfContainer

from terminal.protection.keys import load_gateway_keys, provision_fleet
from tests.web.console_app import console_app
from tests.web.receipt_sessions import captured, key_hex, post_readings, register, signer
from tests.web.test_receipt_details import BERLIN, SELLER


def readings(client: TestClient, receipt_id: str, path: Path) -> OcmfContainer:
    answer = client.get(f"/receipts/{receipt_id}/readings.xml")
    assert answer.status_code == 200
    path.write_bytes(answer.content)
    return OcmfContainer.from_xml(path)


def test_the_provisioned_key_verifies_the_readings_when_the_registry_has_none(
    db_url: str, tmp_path: Path
) -> None:
    fleet = provision_fleet(tmp_path / "keys", fleet_id="demo", devices=["KIOSK-0100"])
    recorded = load_gateway_keys(fleet.gateway_dir).ocmf_keys["KIOSK-0100"]
    device = fleet.device_dirs["KIOSK-0100"]
    assert recorded == key_hex(device)  # the device's own signing key, as provision wrote it

    # Sessions are held and captured with a token only (no card data), so through an app
    # without the fleet's keys; the receipt is then read through one with them.
    plain = console_app(db_url)
    plain.add("alice")
    admin = plain.signed_in("alice")
    register(admin, cpo=SELLER)
    register(admin, station=BERLIN)  # no reading key typed in
    session = captured(plain, 31, "KIOSK-0100")
    post_readings(plain, session, signer(device, "KIOSK-0100"))

    before = plain.client().get(f"/receipts/{session.receipt_id}/readings.xml").content
    assert b"publicKey" not in before  # no key known: none to check against

    app = console_app(db_url, key_dirs=(fleet.gateway_dir,))
    client = app.client()
    assert recorded in client.get(f"/receipts/{session.receipt_id}").text
    container = readings(client, session.receipt_id, tmp_path / "readings.xml")
    assert [r.context for r in container] == ["Transaction.Begin", "Transaction.End"]
    assert all(r.verify_signature() for r in container)

    # A key typed into the registry is the one shown (here another device's: it does not
    # verify, which is how the driver would find a wrong label).
    other = provision_fleet(tmp_path / "other", fleet_id="other", devices=["KIOSK-0100"])
    typed = key_hex(other.device_dirs["KIOSK-0100"])
    register(app.signed_in("alice"), station={**BERLIN, "ocmf_public_key": typed})
    page = client.get(f"/receipts/{session.receipt_id}").text
    assert typed in page and recorded not in page
