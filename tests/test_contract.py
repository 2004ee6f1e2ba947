"""The v1 wire contract (docs/architecture.md, "The wire contract"): the committed OpenAPI
document is the
gateway app's own, and what the terminal sends conforms to it.

The terminal's side is checked on what it really queued: a scripted simulation runs the daemon
against the embedded gateway, and every outbox row is validated against the request schema of
its endpoint in the committed document."""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from gateway.server import EmbeddedGateway
from hardware.sim.card_script import load_profiles
from launcher.simulate import Simulation, parse_script, run_script
from terminal.config import load
from tests.net.proxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "contract" / "openapi.json"
GENERATOR = ROOT / "contract" / "generate.py"
CONFIG = ROOT / "deploy" / "terminal.toml"

# Every kind of request the terminal sends: an authorization and its capture, a decline, a
# partial approval voided by the plug-in timeout, a cancel by the same card, a fault report.
SCRIPT = """
expect idle
tap visa
expect plug-in
plug
ev charge
expect charging
wait 30m
tap visa
expect receipt
unplug
wait 2m
tap declined
wait 10s
tap partial
wait 3m
tap mastercard
wait 5s
tap mastercard
wait 10s
fault rcd_tripped
clear rcd_tripped
wait 10s
"""


def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return document


def request_validator(document: dict[str, Any], path: str) -> Draft202012Validator:
    """The validator for the JSON body of a POST to the concrete `path`."""
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and "post" in operations:
            schema = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
            return Draft202012Validator({**schema, "components": document["components"]})
    raise AssertionError(f"{path} is not a POST endpoint of the contract")


def wire_body(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON the sender POSTs for an outbox row. Event and reading rows are sent in
    batches (terminal.shell.sender.Sender._send_batch); one row is a batch of one."""
    body: dict[str, Any] = json.loads(row["body"])
    if row["kind"] == "events":
        return {"terminal_id": body["terminal_id"], "events": [body["event"]]}
    if row["kind"] == "reading":
        return {"terminal_id": body["terminal_id"], "readings": [body["reading"]]}
    return body


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    sim = run_script(load(CONFIG), SCRIPT, tmp_path_factory.mktemp("contract-sim"))
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="module")
def outbox(simulation: Simulation) -> list[dict[str, Any]]:
    return simulation.daemon.journal.outbox()


def test_committed_openapi_document_is_the_gateways_own() -> None:
    generator = runpy.run_path(str(GENERATOR))
    expected = generator["render"](generator["document"]())
    assert COMMITTED.read_text(encoding="utf-8") == expected, (
        "the gateway's wire changed: review it, then run .venv/bin/python contract/generate.py"
    )


def test_contract_schemas_are_valid_json_schema() -> None:
    for schema in committed()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_simulation_queued_every_kind_of_request(outbox: list[dict[str, Any]]) -> None:
    kinds = {row["kind"] for row in outbox}
    assert kinds >= {"authorize", "capture", "void", "events", "reading"}
    assert {row["state"] for row in outbox} <= {"done", "failed", "superseded"}


def test_every_outbox_body_conforms_to_its_endpoint_schema(outbox: list[dict[str, Any]]) -> None:
    document = committed()
    problems = []
    for row in outbox:
        validator = request_validator(document, row["path"])
        problems += [
            f"{row['kind']} {row['path']}: {error.json_path}: {error.message}"
            for error in validator.iter_errors(wire_body(row))
        ]
    assert problems == []


def test_every_outbox_row_carries_a_usable_idempotency_key(outbox: list[dict[str, Any]]) -> None:
    keys = [row["idem_key"] for row in outbox]
    assert all(0 < len(key) <= 128 for key in keys)
    assert len(set(keys)) == len(keys)


def test_the_gateway_accepted_what_the_terminal_sent(outbox: list[dict[str, Any]]) -> None:
    """Nothing the terminal queued was refused as malformed (400) by the real gateway."""
    for row in outbox:
        answer = json.loads(row["answer"]) if row["answer"] else None
        if row["state"] == "failed":
            assert answer is not None
            assert answer.get("code") not in ("invalid_request", "idempotency_key_reused"), row


def test_validator_rejects_a_body_outside_the_contract(outbox: list[dict[str, Any]]) -> None:
    """The check above has teeth: an unknown field or a float amount is refused."""
    document = committed()
    authorize = next(row for row in outbox if row["kind"] == "authorize")
    body = wire_body(authorize)
    validator = request_validator(document, authorize["path"])
    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "pan": "4111111111111111"})
    assert not validator.is_valid({**body, "amount": {"minor": 50.5, "currency": "EUR"}})


# -- the gateway's answers as the document describes them ---------------------------------


def documented_answer(document: dict[str, Any], path: str, status: int) -> Draft202012Validator:
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and "post" in operations:
            responses = operations["post"]["responses"]
            assert str(status) in responses, f"{status} from {path} is not in the contract"
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            return Draft202012Validator({**schema, "components": document["components"]})
    raise AssertionError(f"{path} is not a POST endpoint of the contract")


def test_gateway_answers_in_the_outbox_match_the_documented_200_schema(
    outbox: list[dict[str, Any]],
) -> None:
    document = committed()
    for row in outbox:
        if row["state"] == "done" and row["answer"] and row["kind"] != "events":
            validator = documented_answer(document, row["path"], 200)
            assert list(validator.iter_errors(json.loads(row["answer"]))) == [], row


def test_every_post_documents_the_error_answers_the_gateway_gives() -> None:
    document = committed()
    error_answer = {"$ref": "#/components/schemas/ErrorAnswer"}
    missing = []
    for template, operations in document["paths"].items():
        if "post" not in operations:
            continue
        responses = operations["post"]["responses"]
        statuses = ["400", "422"] + (["504"] if template == "/v1/authorizations" else [])
        for status in statuses:
            schema = responses.get(status, {}).get("content", {}).get("application/json", {})
            if schema.get("schema") != error_answer:
                missing.append(f"POST {template} {status}")
    assert missing == []


def test_key_reuse_is_answered_with_the_error_shape(tmp_path: Path) -> None:
    """What the gateway really answers for a reused key: 422 with an ErrorAnswer body."""
    gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
    gateway.up()
    try:
        url = gateway.url + "/v1/authorizations/auth-doc-0001/void"
        with requests.Session() as http:
            http.post(url, json={"reason": "a"}, headers={"Idempotency-Key": "k-1"}, timeout=10)
            reused = http.post(
                url, json={"reason": "b"}, headers={"Idempotency-Key": "k-1"}, timeout=10
            )
    finally:
        gateway.close()
    assert reused.status_code == 422
    document = committed()
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/ErrorAnswer", "components": document["components"]}
    )
    assert list(validator.iter_errors(reused.json())) == []
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_key_header_is_documented_as_required() -> None:
    document = committed()
    for template, operations in document["paths"].items():
        if "post" not in operations:
            continue
        (header,) = [
            p for p in operations["post"]["parameters"] if p["name"].lower() == "idempotency-key"
        ]
        assert header["required"] is True, template


def test_the_link_code_the_terminal_asks_for_and_gets_conforms_to_the_contract(
    tmp_path: Path,
) -> None:
    """The receipt's link code is asked for outside the outbox (it is never journaled):
    checked on the wire, through a proxy that keeps what crossed it."""
    proxy = FaultProxy()
    script = "expect idle\ntap visa\nplug\nev charge\nwait 10m\ntap visa\nexpect receipt\nwait 2s\n"
    sim = Simulation(config=load(CONFIG), data_dir=tmp_path / "sim", route=proxy.start)
    try:
        for step in parse_script(script, set(load_profiles())):
            sim.run_step(step)
    finally:
        sim.close()
        proxy.close()
    asked = [(line, sent, got) for line, sent, got in proxy.answered if "/v1/link-codes" in line]
    assert len(asked) == 1, proxy.requests
    (_line, sent, got) = asked[0]
    document = committed()
    assert list(request_validator(document, "/v1/link-codes").iter_errors(json.loads(sent))) == []
    answer = json.loads(got)
    assert list(documented_answer(document, "/v1/link-codes", 200).iter_errors(answer)) == []
    shown = [f for f in sim.hardware.display.frames if f.name == "receipt" and f.code]
    assert shown[-1].code == ("Link code", f"{answer['code'][:4]}-{answer['code'][4:]}")
