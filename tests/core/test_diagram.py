"""The committed state diagram is the one the machine generates."""

from __future__ import annotations

from pathlib import Path

from terminal.diagram import edges, markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"


def test_committed_diagram_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == markdown(), "run `make diagram`"


def test_diagram_shows_the_paths_a_session_takes() -> None:
    found = {(before, after) for before, _event, after in edges()}
    for path in [
        ("Booting", "Idle"),
        ("Idle", "Authorizing"),
        ("Authorizing", "AwaitingVehicle"),
        ("AwaitingVehicle", "Charging"),
        ("Charging", "Suspended"),
        ("Suspended", "Charging"),
        ("Charging", "Finishing"),
        ("Finishing", "Receipt"),
        ("Receipt", "Idle"),
        ("Idle", "Unavailable"),
        ("Unavailable", "Idle"),
    ]:
        assert path in found, path
