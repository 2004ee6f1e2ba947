"""Write the gateway's OpenAPI document to contract/openapi.json, the v1 wire contract.

    .venv/bin/python contract/generate.py

The document is generated from the gateway's FastAPI app (its pydantic wire models) and
committed, so a change to the wire shows up as a reviewed change to this file;
tests/test_contract.py fails while the committed file and the app disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.app import create_app, create_payments
from gateway.ledger import Ledger, open_engine
from gateway.processors.simulated import SimulatedProcessor

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of the gateway app (no requests are served)."""
    engine = open_engine("sqlite://")
    try:
        payments = create_payments(Ledger(engine), SimulatedProcessor(engine))
        openapi: dict[str, Any] = create_app(payments).openapi()
    finally:
        engine.dispose()
    return openapi


def render(openapi: dict[str, Any]) -> str:
    """The committed form: two-space indent, sorted keys, one trailing newline."""
    return json.dumps(openapi, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    DOCUMENT.write_text(render(document()), encoding="utf-8")
