"""Signed meter readings of whole sessions: a begin and an end reading in OCMF, signed with the
terminal's device key, queued through the outbox, batched to the gateway and stored with the
authorization; checked with pyocmf (strict: no deviation from the spec) and our verifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pyocmf import OCMF

from launcher.simulate import Simulation, parse_script
from terminal import ocmf
from terminal.errors import KeyMaterialError
from terminal.shell.signed_readings import (
    PAGINATION_FILE,
    ensure_signing_key,
    public_key_der,
)

Run = Callable[[str], Simulation]

SESSION = """
tap {card}
plug
ev charge
wait 45m
tap {card}
unplug
wait 2m
"""


def device_dir(sim: Simulation) -> Path:
    return sim.data_dir / "keys" / "devices" / sim.config.station.id


def stored(sim: Simulation) -> list[dict[str, object]]:
    return [
        reading
        for auth in sim.gateway.ledger.all_authorizations()
        for reading in sim.gateway.ledger.readings(auth["id"])
    ]


def pagination(text: str) -> int:
    return int(ocmf.parse(text).payload["PG"][1:])


@pytest.mark.parametrize("card", ["visa", "rfid"])
def test_a_session_has_a_signed_begin_and_end_reading_that_pyocmf_verifies(
    simulate: Run, card: str
) -> None:
    sim = simulate(SESSION.format(card=card))
    [result] = sim.results()
    [auth] = sim.gateway.ledger.all_authorizations()
    readings = sim.gateway.ledger.readings(auth["id"])
    assert [r["kind"] for r in readings] == ["begin", "end"]
    key = public_key_der(device_dir(sim))
    parsed = []
    for reading in readings:
        text = str(reading["ocmf"])
        record = OCMF.from_string(text, strict=True)  # a spec deviation raises
        assert record.verify_signature(key.hex()) is True
        assert ocmf.verify(text, key) is True
        parsed.append(ocmf.parse(text).payload)
    begin, end = parsed
    assert [p["RD"][0]["TX"] for p in parsed] == ["B", "E"]
    delivered = end["RD"][0]["RV"] - begin["RD"][0]["RV"]
    assert delivered == Decimal(result["energy_wh"]) / 1000 == Decimal("8.25")
    assert {p["RD"][0]["RU"] for p in parsed} == {"kWh"}
    assert {p["RD"][0]["RI"] for p in parsed} == {"1-b:1.8.0"}
    assert begin["ID"] == end["ID"] == auth["card_token"]  # the token, never card data
    assert begin["IT"] == "CENTRAL"
    assert begin["CI"] == sim.config.station.id and begin["CT"] == "EVSEID"
    assert begin["TT"] == sim.config.tariff.name
    assert pagination(str(readings[1]["ocmf"])) == pagination(str(readings[0]["ocmf"])) + 1
    signature = json.loads(str(readings[0]["ocmf"]).split("|")[2])
    assert signature["SA"] == "ECDSA-secp256r1-SHA256"
    assert auth["status"] == "captured"


def test_readings_wait_in_the_outbox_and_go_in_one_batch(simulate: Run) -> None:
    sim = simulate(
        "tap visa\nplug\ngateway down\nev charge\nwait 45m\ntap visa\nunplug\nwait 2m\n"
        "gateway up\nwait 10m\n"
    )
    rows = [r for r in sim.daemon.journal.outbox() if r["lane"] == "readings"]
    assert [json.loads(r["body"])["reading"]["kind"] for r in rows] == ["begin", "end"]
    assert {r["state"] for r in rows} == {"done"}
    with sim.gateway.ledger.engine.connect() as conn:
        keys = [k for (k,) in conn.execute(sa.text("SELECT key FROM idempotency"))]
    assert [k for k in keys if ":reading:" in k] == [rows[0]["idem_key"] + "+2"]
    assert [r["kind"] for r in stored(sim)] == ["begin", "end"]


def test_the_pagination_counter_never_repeats_across_restarts(simulate: Run) -> None:
    script = (
        SESSION.format(card="visa")
        + "tap mastercard\nplug\nev charge\nwait 10m\nrestart\nwait 1m\nunplug\nwait 2m\n"
        + "restart\n"
        + SESSION.format(card="rfid")
    )
    sim = simulate(script)
    texts = [str(r["ocmf"]) for r in stored(sim)]
    assert len(texts) == 6  # begin and end of three sessions; the crashed one ended at restart
    numbers = [pagination(t) for t in texts]
    assert len(set(numbers)) == len(numbers)
    key = public_key_der(device_dir(sim))
    assert all(ocmf.verify(t, key) for t in texts)


def test_a_session_settled_after_a_crash_gets_its_end_reading(simulate: Run) -> None:
    sim = simulate("tap visa\nplug\nev charge\nwait 20m\nrestart\nwait 1m\n")
    [result] = sim.results()
    [auth] = sim.gateway.ledger.all_authorizations()
    readings = sim.gateway.ledger.readings(auth["id"])
    assert [r["kind"] for r in readings] == ["begin", "end"]
    begin, end = (ocmf.parse(str(r["ocmf"])).payload["RD"][0]["RV"] for r in readings)
    assert end - begin == Decimal(result["energy_wh"]) / 1000


def test_a_session_without_energy_flowing_has_no_readings(simulate: Run) -> None:
    sim = simulate("tap visa\nwait 3m\ntap declined\nwait 10s\n")
    assert stored(sim) == []


def test_a_signing_key_without_its_counter_is_refused(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    (tmp_path / PAGINATION_FILE).unlink()
    with pytest.raises(KeyMaterialError):
        ensure_signing_key(tmp_path)


def test_a_signed_reading_on_request_sits_between_begin_and_end(simulate: Run) -> None:
    from terminal.core.events import SignedReadingRequested

    sim = simulate("tap visa\nplug\nev charge\nwait 20m\n")
    sim.daemon.post(SignedReadingRequested(**sim.daemon.stamp()))
    sim.settle()
    sim.run_step(parse_script("wait 20m", set())[0])
    sim.run_step(parse_script("tap visa", {"visa"})[0])
    sim.run_step(parse_script("wait 2m", set())[0])
    [auth] = sim.gateway.ledger.all_authorizations()
    readings = sim.gateway.ledger.readings(auth["id"])
    assert [r["kind"] for r in readings] == ["begin", "charging", "end"]
    values = [ocmf.parse(str(r["ocmf"])).payload["RD"][0]["RV"] for r in readings]
    assert values[0] < values[1] < values[2]
    assert values[1] - values[0] == Decimal(11_000 * 20 // 60) / 1000
    texts = [str(r["ocmf"]) for r in readings]
    assert [ocmf.parse(t).payload["RD"][0]["TX"] for t in texts] == ["B", "C", "E"]
    key = public_key_der(device_dir(sim))
    assert all(OCMF.from_string(t, strict=True).verify_signature(key.hex()) for t in texts)
