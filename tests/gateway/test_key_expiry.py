"""Idempotency keys are kept at least 24 h, then forgotten by the gateway's background task.

The ledger runs on a fake clock; the embedded gateway serves the real app (uvicorn, lifespan
on), whose background task expires keys periodically."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from gateway.ledger import IDEMPOTENCY_RETENTION, StoredAnswer
from gateway.ledger.idempotency import Claimed, IdempotencyKeys, KeyRef
from gateway.server import EmbeddedGateway
from tests.gateway.test_idempotency import authorization

WAIT_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway(db_url: str, clock: FakeClock) -> Iterator[EmbeddedGateway]:
    gw = EmbeddedGateway(db_url=db_url, clock=clock, expire_every_s=0.02)
    gw.up()
    yield gw
    gw.close()


def post(gw: EmbeddedGateway, key: str, body: dict[str, object]) -> requests.Response:
    return requests.post(
        gw.url + "/v1/authorizations", json=body, headers={"Idempotency-Key": key}, timeout=10
    )


def wait_for_rounds(gw: EmbeddedGateway, rounds: int) -> None:
    """Wait (bounded) until the background task has finished `rounds` more rounds."""
    target = gw.expiry.runs + rounds
    while gw.expiry.runs < target:
        gw.expiry.ran.clear()
        assert gw.expiry.ran.wait(WAIT_S), "the expiry task did not run"


def test_retention_is_at_least_a_day() -> None:
    assert timedelta(hours=24) <= IDEMPOTENCY_RETENTION


def test_a_key_is_replayed_for_a_day_and_forgotten_after_the_retention(
    gateway: EmbeddedGateway, clock: FakeClock
) -> None:
    first = post(gateway, "sess-0001:authorize", authorization("sess-0001"))
    assert first.status_code == 200

    clock.now += timedelta(hours=24, minutes=1)
    wait_for_rounds(gateway, 2)
    reused = post(gateway, "sess-0001:authorize", authorization("sess-0002"))
    assert reused.status_code == 422  # still remembered: same key, another body
    assert post(gateway, "sess-0001:authorize", authorization("sess-0001")).json() == first.json()

    clock.now += IDEMPOTENCY_RETENTION
    wait_for_rounds(gateway, 2)
    # Forgotten: the key is free again (the authorization itself stays in the ledger).
    again = post(gateway, "sess-0001:authorize", authorization("sess-0002"))
    assert again.status_code == 200
    ids = [a["id"] for a in gateway.ledger.all_authorizations()]
    assert ids == ["sess-0001", "sess-0002"]


def test_expire_keys_removes_only_keys_older_than_the_retention(
    gateway: EmbeddedGateway, clock: FakeClock
) -> None:
    gateway.down()  # no background rounds: this test drives expiry itself
    ledger = gateway.ledger
    keys = IdempotencyKeys(ledger, lock_s=30)
    answer = StoredAnswer(status_code=200, body={})
    old, new = KeyRef(caller="KIOSK-1", key="old"), KeyRef(caller="KIOSK-1", key="new")
    for ref in (old, new):
        assert keys.claim(ref, "events", "0" * 64).outcome is Claimed.NEW
        with ledger.engine.begin() as conn:
            keys.store(conn, ref, answer)
        clock.now += timedelta(hours=30)
    clock.now += IDEMPOTENCY_RETENTION - timedelta(hours=31)
    assert gateway.expiry.run_once() == 1
    assert keys.claim(new, "events", "0" * 64).outcome is Claimed.DONE
    assert keys.claim(old, "events", "0" * 64).outcome is Claimed.NEW  # forgotten
    assert gateway.expiry.run_once() == 0
