"""No card blob at rest longer than needed: once the gateway has answered an authorization
(or a void superseded it), the raw bytes of every journal file (the database, its `-wal` and
`-shm`) hold no part of the encrypted card data, in any encoding it was written in."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from launcher.simulate import Simulation, parse_script
from terminal.config import Config, OfflineConfig
from tests.ledger_check import assert_ledger_agrees
from tests.net.proxy import FaultProxy

Run = Callable[[str], Simulation]
JOURNAL_FILES = ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm")


def _step(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(sim.profiles)):
        sim.run_step(step)


def _needles(blob: dict[str, str]) -> list[bytes]:
    """The blob's secret-bearing fields as stored (base64 text in JSON) and as raw bytes."""
    out: list[bytes] = []
    for name in ("ciphertext", "mac", "iv"):
        text = blob[name]
        out += [text.encode("ascii"), json.dumps(text).encode("ascii")[1:-1]]
        out.append(base64.b64decode(text))
    return out


def _found(data_dir: Path, blob: dict[str, str]) -> list[str]:
    hits = []
    for name in JOURNAL_FILES:
        path = data_dir / name
        raw = path.read_bytes() if path.exists() else b""
        hits += [f"{name}: {needle[:12]!r}" for needle in _needles(blob) if needle in raw]
    return hits


def _pending_blob(sim: Simulation) -> dict[str, str]:
    [row] = [
        r
        for r in sim.daemon.journal.outbox()
        if r["kind"] == "authorize" and r["state"] == "pending"
    ]
    return dict(json.loads(row["body"])["card"]["payload"])


@pytest.fixture
def proxied(config: Config, tmp_path: Path) -> Iterator[tuple[Simulation, FaultProxy]]:
    proxy = FaultProxy()
    sim = Simulation(config=config, data_dir=tmp_path / "sim", route=proxy.start)
    yield sim, proxy
    sim.close()
    proxy.close()


def test_an_answered_authorization_leaves_no_blob_in_any_journal_file(
    proxied: tuple[Simulation, FaultProxy],
) -> None:
    sim, proxy = proxied
    _step(sim, "tap visa\nexpect plug-in")
    [request] = [json.loads(b) for b in proxy.bodies if b'"authorization_id"' in b]
    blob = request["card"]["payload"]
    assert blob["ciphertext"]
    assert _found(sim.data_dir, blob) == []
    [row] = [r for r in sim.daemon.journal.outbox() if r["kind"] == "authorize"]
    assert row["state"] == "done"
    assert "payload" not in json.loads(row["body"])["card"]
    # The session goes on and settles as before.
    _step(sim, "plug\nev charge\nwait 10m\ntap visa\nexpect receipt\nwait 1m")
    assert _found(sim.data_dir, blob) == []
    assert_ledger_agrees(sim)


def test_a_blob_waits_while_unanswered_and_goes_with_the_answer(
    config: Config, tmp_path: Path
) -> None:
    offline = OfflineConfig(
        store_and_forward=True,
        max_session=2000,
        max_outstanding=10_000,
        max_count=5,
        max_age_ms=24 * 3_600_000,
    )
    sim = Simulation(config=replace(config, offline=offline), data_dir=tmp_path / "saf")
    try:
        _step(sim, "gateway down\ntap visa\nexpect plug-in\nplug\nev charge\nwait 5m")
        blob = _pending_blob(sim)
        # Unanswered, the blob is what the gateway will need: it is at rest (the check finds it).
        assert _found(sim.data_dir, blob)
        _step(sim, "gateway up\nwait 10m")  # past the longest back-off
        [row] = [r for r in sim.daemon.journal.outbox() if r["kind"] == "authorize"]
        assert row["state"] == "done"
        assert _found(sim.data_dir, blob) == []
        _step(sim, "tap visa\nexpect receipt\nwait 1m")
        assert_ledger_agrees(sim)
    finally:
        sim.close()


def test_a_superseded_authorization_loses_its_blob_at_once(simulate: Run) -> None:
    sim = simulate("gateway down\n")
    journal = sim.daemon.journal
    _step(sim, "tap visa")
    # No answer (the gateway is down, no store-and-forward): the void overtook the request.
    rows = {r["kind"]: r for r in journal.outbox() if r["kind"] in ("authorize", "void")}
    assert rows["authorize"]["state"] == "superseded"
    assert "payload" not in json.loads(rows["authorize"]["body"])["card"]
    raw = b"".join(
        (sim.data_dir / n).read_bytes() for n in JOURNAL_FILES if (sim.data_dir / n).exists()
    )
    assert b"ciphertext" not in raw


def test_start_up_cuts_a_blob_a_crash_left_after_its_answer(simulate: Run) -> None:
    sim = simulate("tap visa\nexpect plug-in\n")
    journal = sim.daemon.journal
    conn = journal._conn()
    # As written by a kiosk before this rule: the answered row still holds its blob.
    fake = {"format": "x", "ciphertext": "Q0lQSEVSVEVYVA==", "iv": "SVZJVg==", "mac": "TUFDTQ=="}
    conn.execute(
        "UPDATE outbox SET body = json_set(body, '$.card.payload', json(?)) WHERE kind='authorize'",
        (json.dumps(fake),),
    )
    assert _found(sim.data_dir, fake)
    _step(sim, "restart")
    assert _found(sim.data_dir, fake) == []
