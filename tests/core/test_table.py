"""The machine's table is total: every (phase, event) pair is a transition or a named ignore."""

from __future__ import annotations

import itertools

import pytest

from terminal.core.events import EVENT_TYPES
from terminal.core.kiosk import PHASE_TYPES
from terminal.core.machine import IGNORED, TRANSITIONS

ALL_PAIRS = list(itertools.product(PHASE_TYPES, EVENT_TYPES))


@pytest.mark.parametrize(
    ("phase", "event"), ALL_PAIRS, ids=[f"{p.__name__}-{e.__name__}" for p, e in ALL_PAIRS]
)
def test_every_phase_event_pair_is_handled_or_ignored_exactly_once(
    phase: type, event: type
) -> None:
    handled = (phase, event) in TRANSITIONS
    ignored = (phase, event) in IGNORED
    assert handled != ignored, f"{phase.__name__}, {event.__name__}: {handled=} {ignored=}"


def test_no_pair_is_both_a_transition_and_ignored() -> None:
    assert set(TRANSITIONS) & IGNORED == set()


def test_table_names_only_known_phases_and_events() -> None:
    known = set(ALL_PAIRS)
    assert set(TRANSITIONS) <= known
    assert known >= IGNORED
