"""Two and four gateway processes on one PostgreSQL database, racing on the same
authorizations: exactly one effect each time (in the ledger and at the processor), every
other answer a clean 409 (or the replay of the winner's answer), never a 5xx."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.ledger import Ledger, open_engine
from gateway.processors.simulated import SimulatedProcessor
from tests.gateway.test_idempotency import authorization
from tests.gateway.test_idempotency import capture as capture_body
from tests.ports import free_port
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROUNDS = 5
CLEAN_409 = {"already_captured", "not_capturable", "not_voidable", "not_incrementable"}


class Fleet:
    """Gateway processes on one database, each on its own port."""

    def __init__(self, db_url: str, count: int, log: Path) -> None:
        self.db_url = db_url
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = log.open("ab")
        for _ in range(count):
            port = free_port()
            self.procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "ev-terminal"),
                        "gateway",
                        "--db",
                        db_url,
                        "--port",
                        str(port),
                        "--insecure-dev",
                    ],
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        try:
            self._wait_up()
        except BaseException:
            self.close()
            raise
        self.engine = open_engine(db_url)
        self.ledger = Ledger(self.engine)
        self.processor = SimulatedProcessor(self.engine)

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 60
        for url, proc in zip(self.urls, self.procs, strict=True):
            while True:
                try:
                    if requests.get(url + "/healthz", timeout=5).ok:
                        break
                except requests.RequestException:  # refused, or too slow to answer yet
                    pass
                assert proc.poll() is None, f"a gateway process exited: {proc.returncode}"
                assert time.monotonic() < deadline, "gateway processes did not start"
                time.sleep(0.1)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=20)
        if hasattr(self, "engine"):
            self.engine.dispose()
        self.log.close()

    def moves(self, auth_id: str) -> list[tuple[str, int]]:
        return [
            (m["kind"], m["amount"])
            for m in self.ledger.all_movements()
            if m["authorization_id"] == auth_id
        ]

    def payment(self, auth_id: str) -> dict[str, Any]:
        [found] = [p for p in self.processor.payments() if p["payment_id"] == auth_id]
        return found


@pytest.fixture(scope="module")
def fleet(
    postgres: PostgresServer, gateway_template: str, tmp_path_factory: Any
) -> Iterator[Fleet]:
    log = tmp_path_factory.mktemp("races") / "gateways.log"
    fleet = Fleet(postgres.database(template=gateway_template), 4, log)
    try:
        yield fleet
    finally:
        fleet.close()


def capture(minor: int) -> dict[str, Any]:
    """A capture body with a receipt id of its own (receipt ids are unique in the ledger)."""
    body = capture_body(minor)
    body["receipt"] = {**body["receipt"], "receipt_id": f"R{next(_RECEIPTS):011d}"}
    return body


_RECEIPTS = itertools.count(1)


def post(url: str, path: str, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url + path, json=body, headers={"Idempotency-Key": key}, timeout=30)


def race(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run the calls at the same moment, one thread each."""
    barrier = threading.Barrier(len(calls))
    answers: list[requests.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(a is not None for a in answers)
    # A request told `in_progress` is retried as a terminal would, until it gets its answer.
    done = []
    for call, first in zip(calls, answers, strict=True):
        assert first is not None
        last = first
        for _ in range(100):
            if last.status_code != 409 or last.json()["error"]["code"] != "in_progress":
                break
            time.sleep(0.05)
            last = call()
        done.append(last)
    return done


def held(fleet: Fleet, auth_id: str) -> None:
    answer = post(fleet.urls[0], "/v1/authorizations", f"{auth_id}:a", authorization(auth_id))
    assert answer.json()["status"] == "approved", answer.text


def clean(answers: list[requests.Response]) -> tuple[list[requests.Response], set[str]]:
    """The 200s, and the codes of the 409s; anything else fails the test."""
    ok = [a for a in answers if a.status_code == 200]
    codes = set()
    for a in answers:
        if a.status_code != 200:
            assert a.status_code == 409, a.text
            codes.add(a.json()["error"]["code"])
    assert codes <= CLEAN_409, codes
    return ok, codes


@pytest.mark.parametrize("workers", [2, 4])
def test_the_same_capture_key_on_every_worker_captures_once(fleet: Fleet, workers: int) -> None:
    for n in range(ROUNDS):
        aid = f"race-samekey-{workers}-{n:03d}"
        held(fleet, aid)
        body = capture(321)
        answers = race(
            [
                partial(post, url, f"/v1/authorizations/{aid}/capture", f"{aid}:c", body)
                for url in fleet.urls[:workers]
            ]
        )
        ok, _ = clean(answers)
        assert ok, "nobody captured"
        assert all(a.json() == ok[0].json() for a in ok)
        assert fleet.moves(aid) == [("hold", 5000), ("capture", 321)]
        assert (fleet.payment(aid)["state"], fleet.payment(aid)["captured"]) == ("captured", 321)


@pytest.mark.parametrize("workers", [2, 4])
def test_captures_of_different_amounts_under_different_keys_capture_once(
    fleet: Fleet, workers: int
) -> None:
    for n in range(ROUNDS):
        aid = f"race-diffkey-{workers}-{n:03d}"
        held(fleet, aid)
        answers = race(
            [
                partial(
                    post, url, f"/v1/authorizations/{aid}/capture", f"{aid}:c{i}", capture(300 + i)
                )
                for i, url in enumerate(fleet.urls[:workers])
            ]
        )
        ok, _ = clean(answers)
        moves = fleet.moves(aid)
        captures = [m for m in moves if m[0] == "capture"]
        assert len(captures) == 1, moves
        assert len(ok) == 1 and ok[0].json()["amount_captured"]["minor"] == captures[0][1]
        assert fleet.payment(aid)["captured"] == captures[0][1]


@pytest.mark.parametrize("workers", [2, 4])
def test_capture_against_void_ends_the_hold_exactly_once(fleet: Fleet, workers: int) -> None:
    for n in range(ROUNDS):
        aid = f"race-capvoid-{workers}-{n:03d}"
        held(fleet, aid)
        calls = []
        for i, url in enumerate(fleet.urls[:workers]):
            if i % 2 == 0:
                calls.append(
                    partial(
                        post, url, f"/v1/authorizations/{aid}/capture", f"{aid}:c{i}", capture(321)
                    )
                )
            else:
                calls.append(
                    partial(
                        post,
                        url,
                        f"/v1/authorizations/{aid}/void",
                        f"{aid}:v{i}",
                        {"reason": "race"},
                    )
                )
        clean(race(calls))
        ends = [m for m in fleet.moves(aid) if m[0] in ("capture", "release")]
        assert len(ends) == 1, fleet.moves(aid)
        state = fleet.payment(aid)["state"]
        assert state == ("captured" if ends[0][0] == "capture" else "released")


@pytest.mark.parametrize("workers", [2, 4])
def test_increment_against_capture_never_captures_above_the_hold(
    fleet: Fleet, workers: int
) -> None:
    increment = {
        "amount": {"minor": 2000, "currency": "EUR"},
        "ceiling": {"minor": 20000, "currency": "EUR"},
    }
    for n in range(ROUNDS):
        aid = f"race-inccap-{workers}-{n:03d}"
        held(fleet, aid)
        calls = []
        for i, url in enumerate(fleet.urls[:workers]):
            if i % 2 == 0:
                calls.append(
                    partial(
                        post, url, f"/v1/authorizations/{aid}/increment", f"{aid}:i{i}", increment
                    )
                )
            else:
                calls.append(
                    partial(
                        post, url, f"/v1/authorizations/{aid}/capture", f"{aid}:c{i}", capture(4900)
                    )
                )
        answers = race(calls)
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
        moves = fleet.moves(aid)
        assert len([m for m in moves if m[0] == "capture"]) == 1, moves
        held_total = sum(amount for kind, amount in moves if kind in ("hold", "increment"))
        payment = fleet.payment(aid)
        assert payment["captured"] == 4900 <= held_total
        # Increments that lost to the capture moved no money; the rest each moved once.
        row = fleet.ledger.fetch(aid)
        assert row is not None and row.op is None and row.amount_authorized == held_total
