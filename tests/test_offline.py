"""The offline policy end to end: scripted sessions on the simulator with `gateway down`.

The kiosk syncs its local authorization and deny lists from the gateway (GET
/v1/terminal-config, ETag), decides on them while the gateway is unreachable, and the
authorization of a session started offline reaches the gateway when it is back, followed by
its capture."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hardware.sim.card_script import load_profiles
from launcher.simulate import Simulation, parse_script
from terminal.config import Config, OfflineConfig, parse
from terminal.errors import ConfigError
from terminal.shell.gateway_client import GatewayClient
from tests.conftest import EXAMPLE_CONFIG
from tests.ledger_check import assert_ledger_agrees

SYNC = "16m"
Make = Callable[..., Simulation]  # one sync interval (15 min) and a little


def run(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(load_profiles())):
        sim.run_step(step)


@pytest.fixture
def make(config: Config, tmp_path: Path) -> Iterator[Make]:
    sims: list[Simulation] = []

    def build(offline: OfflineConfig | None = None) -> Simulation:
        sim = Simulation(
            config=replace(config, offline=offline or OfflineConfig()),
            data_dir=tmp_path / f"sim{len(sims)}",
        )
        sims.append(sim)
        return sim

    yield build
    for sim in sims:
        sim.close()


def token_of(sim: Simulation, card: str) -> str:
    """A card's fleet token, learnt the way the gateway learns it: from an online tap."""
    before = {a["id"] for a in sim.gateway.ledger.all_authorizations()}
    run(sim, f"tap {card}\nwait 5s\ntap {card}\nwait 10s\n")  # tap, then cancel by the same card
    [auth] = [a for a in sim.gateway.ledger.all_authorizations() if a["id"] not in before]
    return str(auth["card_token"])


def screen(sim: Simulation) -> str | None:
    shown = sim.hardware.display.current
    return shown.name if shown else None


CHARGE = "tap {card}\nexpect plug-in\nplug\nev charge\nwait 30m\ntap {card}\nunplug\nwait 2m\n"


def test_by_default_a_bank_card_gets_no_answer_at_once_while_the_gateway_is_down(
    make: Make,
) -> None:
    sim = make()
    run(sim, "gateway down\ntap visa\n")
    assert screen(sim) == "no-answer"  # at once: the connection is refused
    run(sim, "wait 10s\nexpect idle\ngateway up\nwait 10m\n")
    assert [a["status"] for a in sim.gateway.ledger.all_authorizations()] == ["voided"]
    assert sim.gateway.ledger.all_movements() == []


def test_a_listed_id_token_charges_offline_and_is_settled_when_the_gateway_is_back(
    make: Make,
) -> None:
    sim = make()
    token = token_of(sim, "rfid")
    sim.gateway.ledger.put_token(token, "allow")
    run(sim, f"wait {SYNC}\ngateway down\n" + CHARGE.format(card="rfid"))
    offline = sim.results()[-1]
    assert offline["settlement"] == "captured" and not offline["acknowledged"]
    assert offline["energy_wh"] == 5500
    # A token not on the list still gets no answer.
    run(sim, "tap rfid-2\nexpect no-answer\nwait 10s\ngateway up\nwait 10m\n")
    auth = sim.gateway.ledger.all_authorizations()
    captured = [a for a in auth if a["status"] == "captured"]
    assert [a["id"] for a in captured] == [offline["session_id"]]
    assert captured[0]["amount_captured"] == offline["amount_captured"]
    assert sim.results()[-2]["acknowledged"]
    assert_ledger_agrees(sim)


def test_the_deny_list_is_honoured_offline(make: Make) -> None:
    sim = make(
        OfflineConfig(
            store_and_forward=True,
            max_session=2000,
            max_outstanding=10_000,
            max_count=5,
            max_age_ms=24 * 3_600_000,
        )
    )
    rfid, visa = token_of(sim, "rfid"), token_of(sim, "visa")
    sim.gateway.ledger.put_token(rfid, "allow")
    run(sim, f"wait {SYNC}\n")
    sim.gateway.ledger.put_token(rfid, "deny")
    sim.gateway.ledger.put_token(visa, "deny")
    run(sim, f"wait {SYNC}\ngateway down\ntap rfid\nexpect declined\nwait 10s\n")
    run(sim, "tap visa\nexpect declined\nwait 10s\n")
    run(sim, "tap mastercard\nexpect plug-in\n")  # not denied: store-and-forward starts it
    assert sim.hardware.contactor.history.count("close") == 0


def test_lists_survive_a_restart_while_the_gateway_is_down(make: Make) -> None:
    sim = make()
    sim.gateway.ledger.put_token(token_of(sim, "rfid"), "allow")
    run(sim, f"wait {SYNC}\ngateway down\nrestart\ntap rfid\nexpect plug-in\n")


@pytest.mark.slow
def test_store_and_forward_caps_hold_in_a_run(make: Make) -> None:
    """A cap of 6.00 EUR a session and 15.00 EUR outstanding: two sessions start offline
    and stop at their cap, the third is refused (12.00 + 6.00 > 15.00); once the gateway has
    answered them, the book is empty and a bank card starts offline again."""
    sim = make(
        OfflineConfig(
            store_and_forward=True,
            max_session=600,
            max_outstanding=1500,
            max_count=5,
            max_age_ms=24 * 3_600_000,
        )
    )
    run(sim, "gateway down\n")
    for card in ("visa", "mastercard"):
        run(sim, f"tap {card}\nexpect plug-in\nplug\nev charge\nwait 3h\nunplug\nwait 2m\n")
    first, second = sim.results()
    assert {first["ended"], second["ended"]} == {"cost_cap"}
    assert 590 < first["amount_captured"] <= 600 and 590 < second["amount_captured"] <= 600
    outstanding, count, _ = sim.daemon.journal.offline_book()
    assert (outstanding, count) == (first["amount_captured"] + second["amount_captured"], 2)
    run(sim, "tap amex\nexpect no-answer\nwait 10s\n")
    run(sim, "gateway up\nwait 10m\n")
    assert sim.daemon.journal.offline_book()[:2] == (0, 0)
    captured = [a for a in sim.gateway.ledger.all_authorizations() if a["status"] == "captured"]
    assert len(captured) == 2 and all(a["amount_captured"] <= 600 for a in captured)
    assert_ledger_agrees(sim)
    run(sim, "gateway down\ntap amex\nexpect plug-in\n")


def test_store_and_forward_age_cap_in_a_run(make: Make) -> None:
    sim = make(
        OfflineConfig(
            store_and_forward=True,
            max_session=600,
            max_outstanding=10_000,
            max_count=5,
            max_age_ms=3_600_000,
        )
    )
    run(sim, "gateway down\n" + CHARGE.format(card="visa"))
    run(sim, "wait 1h\ntap mastercard\nexpect no-answer\n")


def test_terminal_config_answers_304_while_unchanged(make: Make) -> None:
    sim = make()
    client = GatewayClient(sim.gateway.url, 5_000)
    data, etag = client.get_if_changed("/v1/terminal-config", None)
    assert data == {"authorization_list": [], "deny_list": []} and etag
    assert client.get_if_changed("/v1/terminal-config", etag) == (None, etag)
    sim.gateway.ledger.put_token("tok-0123456789", "deny")
    changed, new_etag = client.get_if_changed("/v1/terminal-config", etag)
    assert changed == {"authorization_list": [], "deny_list": ["tok-0123456789"]}
    assert new_etag != etag


# -- the [offline] keys ---------------------------------------------------------------------


def offline_section(**keys: object) -> dict[str, object]:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["offline"] = keys
    return data


def test_offline_defaults_are_online_only_for_bank_cards(tmp_path: Path) -> None:
    offline = parse(offline_section(), base=tmp_path).offline
    assert offline == OfflineConfig()
    assert offline.local_list and not offline.store_and_forward


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"store_and_forward": True}, "offline.max_session"),
        (
            {
                "store_and_forward": True,
                "max_session": 600,
                "max_outstanding": 1000,
                "max_count": 3,
            },
            "offline.max_age",
        ),
        (
            {
                "store_and_forward": True,
                "max_session": 6000,
                "max_outstanding": 9000,
                "max_count": 3,
                "max_age": "24h",
            },
            "offline.max_session",
        ),
        (
            {
                "store_and_forward": True,
                "max_session": 600,
                "max_outstanding": 500,
                "max_count": 3,
                "max_age": "24h",
            },
            "offline.max_outstanding",
        ),
        ({"max_sessions": 3}, "offline.max_sessions"),
    ],
)
def test_bad_offline_keys_name_the_key(tmp_path: Path, keys: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(offline_section(**keys), base=tmp_path)
    assert raised.value.key == named


def test_the_deny_list_holds_online_too(make: Make) -> None:
    sim = make()
    sim.gateway.ledger.put_token(token_of(sim, "visa"), "deny")
    run(sim, "tap visa\nexpect declined\n")
    auth = sim.gateway.ledger.all_authorizations()[-1]
    assert (auth["status"], auth["decline_reason"]) == ("declined", "denied")
    assert [m["kind"] for m in sim.gateway.ledger.all_movements()] == ["hold", "release"]
