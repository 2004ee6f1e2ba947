"""Unknown outcomes are resolved: a processor outage leaves steps unknown; the reconciler asks
the processor and settles them; `ev-terminal gateway reconcile` reports what needs a person.
Background jobs are coordinated through the database. On both back-ends."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from gateway.jobs.crl_watch import CrlWatch
from gateway.jobs.expiry import KeyExpiry
from gateway.server import EmbeddedGateway
from gateway.tls import Revocations
from terminal.protection import certs
from tests.gateway.test_idempotency import authorization, capture

BIN = Path(sys.executable).parent


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)  # `gateway reconcile` (another process) reads the real time

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(db_url: str, clock: FakeClock) -> Iterator[EmbeddedGateway]:
    # Background rounds far apart: the tests run the reconciler themselves.
    gateway = EmbeddedGateway(db_url=db_url, clock=clock, reconcile_every_s=3600, lock_s=5)
    gateway.up()
    # The round every worker runs at start is over before the test begins.
    assert gateway.reconciler.ran.wait(30)
    try:
        yield gateway
    finally:
        gateway.close()


def post(gw: EmbeddedGateway, path: str, key: str, body: dict[str, object]) -> requests.Response:
    return requests.post(gw.url + path, json=body, headers={"Idempotency-Key": key}, timeout=10)


def moves(gw: EmbeddedGateway, aid: str) -> list[tuple[str, int]]:
    return [
        (m["kind"], m["amount"]) for m in gw.ledger.all_movements() if m["authorization_id"] == aid
    ]


def test_an_outage_during_a_capture_is_resolved_by_the_reconciler(
    gw: EmbeddedGateway, clock: FakeClock
) -> None:
    aid = "auth-outage-0001"
    assert post(gw, "/v1/authorizations", "a", authorization(aid)).status_code == 200
    gw.processor.fail = "lost"  # the capture happens at the processor, its answer is lost
    assert post(gw, f"/v1/authorizations/{aid}/capture", "c", capture(321)).status_code == 504
    row = gw.ledger.fetch(aid)
    assert row is not None and (row.status, row.op, row.op_state) == (
        "approved",
        "capture",
        "unknown",
    )
    gw.processor.fail = "unreachable"  # the outage goes on: the step stays unknown
    report = gw.reconciler.report()
    assert report.resolved == 0 and report.unknown and report.needs_operator
    gw.processor.fail = None
    calls = gw.processor.calls
    assert gw.reconciler.run_once() == 1
    assert gw.processor.calls == calls  # found by asking, not by capturing again
    row = gw.ledger.fetch(aid)
    assert row is not None and (row.status, row.op, row.amount_captured) == ("captured", None, 321)
    assert moves(gw, aid) == [("hold", 5000), ("capture", 321)]
    # The terminal's retry of its capture gets the answer, and nothing moves again.
    again = post(gw, f"/v1/authorizations/{aid}/capture", "c", capture(321))
    assert again.status_code == 200
    assert again.json()["amount_captured"]["minor"] == 321
    assert moves(gw, aid) == [("hold", 5000), ("capture", 321)]


def test_an_unanswered_hold_is_left_to_its_terminal_then_failed_or_approved(
    gw: EmbeddedGateway, clock: FakeClock
) -> None:
    gw.processor.fail = "unreachable"
    assert post(gw, "/v1/authorizations", "a1", authorization("auth-never-0001")).status_code == 504
    gw.processor.fail = "lost"
    assert post(gw, "/v1/authorizations", "a2", authorization("auth-lost-00001")).status_code == 504
    gw.processor.fail = None
    assert gw.reconciler.run_once() == 0  # within the grace: the terminals may still retry
    clock.now += timedelta(minutes=3)
    assert gw.reconciler.run_once() == 2
    never = gw.ledger.fetch("auth-never-0001")
    lost = gw.ledger.fetch("auth-lost-00001")
    assert never is not None and (never.status, never.op) == ("failed", None)
    assert lost is not None and (lost.status, lost.amount_authorized) == ("approved", 5000)
    # The terminal gave up on it long ago: its void releases the hold found by asking.
    assert post(gw, "/v1/authorizations/auth-lost-00001/void", "v", {"reason": "no_answer"}).ok
    assert moves(gw, "auth-lost-00001") == [("hold", 5000), ("release", 5000)]
    assert [p["state"] for p in gw.processor.payments()] == ["released"]


def test_stale_holds_are_flagged_and_reconcile_exits_non_zero(
    gw: EmbeddedGateway, clock: FakeClock, db_url: str
) -> None:
    assert post(gw, "/v1/authorizations", "a", authorization("auth-stale-0001")).status_code == 200
    clean = _reconcile(db_url)
    assert clean.returncode == 0, clean.stdout
    assert [h["authorization_id"] for h in json.loads(clean.stdout)["open"]] == ["auth-stale-0001"]
    clock.now += timedelta(days=8)
    gw.reconciler.run_once()
    row = gw.ledger.fetch("auth-stale-0001")
    assert row is not None and row.flag == "stale"
    flagged = _reconcile(db_url)
    assert flagged.returncode == 1
    assert [h["authorization_id"] for h in json.loads(flagged.stdout)["stale"]] == [
        "auth-stale-0001"
    ]


def test_reconcile_reports_a_hold_the_processor_no_longer_has(
    gw: EmbeddedGateway, db_url: str
) -> None:
    assert post(gw, "/v1/authorizations", "a", authorization("auth-gone-0001")).status_code == 200
    [payment] = gw.processor.payments()
    gw.processor.release(
        key="out-of-band",
        reference=payment["reference"],
        amount=gw.payments.limits.check(5000, "EUR"),
    )
    report = _reconcile(db_url)
    assert report.returncode == 1
    [mismatch] = json.loads(report.stdout)["mismatched"]
    assert mismatch["authorization_id"] == "auth-gone-0001"
    assert mismatch["processor_says"].startswith("released")


def _reconcile(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", "reconcile", "--db", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_job_round_runs_in_one_worker_at_a_time(gw: EmbeddedGateway) -> None:
    first = KeyExpiry(gw.ledger, every_s=60)
    assert gw.ledger.take_lease("key-expiry-test", "worker-a", 60)
    assert not gw.ledger.take_lease("key-expiry-test", "worker-b", 60)
    assert gw.ledger.take_lease("key-expiry-test", "worker-a", 60)  # renewed by its holder
    first.round()
    assert first.runs in (0, 1)


def test_the_crl_watch_warns_before_the_crl_lapses(
    gw: EmbeddedGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    ca = certs.issue_ca("fleet", now=now - timedelta(days=10))
    ca_file, crl_file = tmp_path / "ca.pem", tmp_path / "crl.pem"
    certs.write_cert(ca_file, ca[0])
    crl_file.write_bytes(certs.crl(ca, [], now=now, days=3))
    caplog.set_level(logging.INFO, logger="ev_gateway.tls")
    watch = CrlWatch(gw.ledger, Revocations(crl_file, ca_file, lambda: now))
    left = watch.run_once()
    assert left is not None and timedelta(days=2, hours=23) < left <= timedelta(days=3)
    assert any("event=crl_expiring" in r.getMessage() for r in caplog.records)
