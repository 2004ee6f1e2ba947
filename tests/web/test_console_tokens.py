"""The console's token lists: an admin blocks or allows a token (audited), a read-only
operator cannot, and a kiosk on the simulator declines a blocked token after its next sync,
with the gateway unreachable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.ledger.operators import Operators
from gateway.ledger.web_schema import READ_ONLY
from gateway.web.operator_auth import hash_password
from launcher.simulate import Simulation
from terminal.config import Config, OfflineConfig
from tests.test_offline import SYNC, run, token_of
from tests.web.console_app import PASSWORD, console_app, form_token, sign_in
from tests.web.generate import Generator


def _put(client: TestClient, token: str, to: str) -> int:
    page = client.get("/console/tokens").text
    answer = client.post(
        "/console/tokens",
        data={"csrf": form_token(page), "token": token, "to": to},
        follow_redirects=False,
    )
    return answer.status_code


def test_an_admin_blocks_and_allows_tokens_and_kiosks_are_served_the_lists(db_url: str) -> None:
    app = console_app(db_url)
    app.add("alice")
    app.add("reader", role=READ_ONLY)
    gen = Generator(app.built.payments, app.clock, seed=9)
    gen.session(app.clock.now, currency="EUR")
    [seen] = app.built.ledger.all_authorizations()
    token = seen["card_token"]
    admin = app.signed_in("alice")
    page = admin.get("/console/tokens").text
    assert token in page
    assert _put(admin, token, "deny") == 303
    assert _put(admin, "tok-typed-by-hand-01", "allow") == 303
    config = app.client().get("/v1/terminal-config").json()
    assert config == {"authorization_list": ["tok-typed-by-hand-01"], "deny_list": [token]}
    row = re.search(rf'data-token="{token}">.*?</tr>', admin.get("/console/tokens").text, re.S)
    assert row is not None and "blocked" in row.group(0)
    assert _put(admin, token, "none") == 303
    assert app.client().get("/v1/terminal-config").json()["deny_list"] == []
    changes = [e for e in app.operators.audit_entries() if e["action"] == "token.list"]
    assert [(e["target"], e["detail"]["from"], e["detail"]["to"]) for e in reversed(changes)] == [
        (token, None, "deny"),
        ("tok-typed-by-hand-01", None, "allow"),
        (token, "deny", None),
    ]
    for bad_token, to in (("short", "deny"), ("has space in it", "deny"), (token, "maybe")):
        assert _put(admin, bad_token, to) == 400
    reader = app.signed_in("reader")
    assert "Block" not in reader.get("/console/tokens").text
    assert _put(reader, token, "deny") == 403
    assert app.client().get("/v1/terminal-config").json()["deny_list"] == []


@pytest.fixture
def sim(config: Config, tmp_path: Path) -> Iterator[Simulation]:
    simulation = Simulation(
        config=replace(config, offline=OfflineConfig()), data_dir=tmp_path / "sim"
    )
    try:
        yield simulation
    finally:
        simulation.close()


def test_a_token_blocked_in_the_console_is_declined_at_the_kiosk_after_the_next_sync(
    sim: Simulation,
) -> None:
    gateway = sim.gateway
    Operators(gateway.engine, gateway.ledger.clock).add(
        "alice", hash_password(PASSWORD), "admin", actor="cli"
    )
    client = TestClient(gateway.app, base_url="https://testserver")
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    rfid = token_of(sim, "rfid")
    # Allowed offline, synced: the token starts a session with the gateway unreachable.
    assert _put(client, rfid, "allow") == 303
    run(sim, f"wait {SYNC}\ngateway down\ntap rfid\nexpect plug-in\nwait 3m\ngateway up\nwait 5m\n")
    # Blocked in the console; after the next sync the kiosk declines it, gateway or none.
    assert _put(client, rfid, "deny") == 303
    run(sim, f"wait {SYNC}\ngateway down\ntap rfid\nexpect declined\nwait 10s\n")
    assert sim.hardware.contactor.history.count("close") == 0
