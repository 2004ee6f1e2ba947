"""The kiosk's side of the command channel on its own thread, against the live embedded
gateway: the long poll stays open and hands the daemon a command written while it waits;
a gateway that goes away is polled again after a bounded, jittered back-off, and the
channel picks up where it was once the gateway is back. Malformed commands change nothing."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.processors import CardRef
from gateway.processors.methods import WEB_CARD
from gateway.server import EmbeddedGateway
from hardware.clock import ManualClock
from terminal.core.events import Event, StopRequested, WebPaymentAuthorized
from terminal.money import Money
from terminal.shell.commands import CommandChannel
from terminal.shell.gateway_client import GatewayClient
from terminal.shell.journal import Journal

TERMINAL = "kiosk-0001"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EmbeddedGateway]:
    gw = EmbeddedGateway(tmp_path / "gateway.sqlite3")
    gw.up()
    try:
        yield gw
    finally:
        gw.close()


def channel_to(
    gw: EmbeddedGateway, tmp_path: Path, events: queue.Queue[Event], **kwargs: int
) -> CommandChannel:
    return CommandChannel(
        Journal(tmp_path / "journal.sqlite3"),
        GatewayClient(gw.url, timeout_ms=5_000),
        ManualClock(),
        events.put,
        terminal_id=TERMINAL,
        rng=random.Random(7),
        **kwargs,
    )


def paid(gw: EmbeddedGateway, aid: str) -> str:
    card = CardRef(
        kind=WEB_CARD, token=f"web:{aid}", brand="Visa", last4="4242", expiry=None, payload={}
    )
    gw.payments.hold_web(
        authorization_id=aid, terminal_id=TERMINAL, card=card, amount=Money(2000, "EUR")
    )
    return gw.commands.start(
        aid, expires_at=gw.ledger.clock() + timedelta(minutes=5), brand="Visa", last4="4242"
    )


def running(channel: CommandChannel) -> threading.Thread:
    thread = threading.Thread(target=channel.run, daemon=True)
    thread.start()
    return thread


def test_the_open_poll_hands_a_new_command_to_the_daemon(
    gateway: EmbeddedGateway, tmp_path: Path
) -> None:
    events: queue.Queue[Event] = queue.Queue()
    channel = channel_to(gateway, tmp_path, events, wait_s=20)
    thread = running(channel)
    try:
        threading.Event().wait(0.3)
        start = paid(gateway, "web-chan-0001")
        event = events.get(timeout=25)
        assert isinstance(event, WebPaymentAuthorized)
        assert (event.command_id, event.session_id) == (start, "web-chan-0001")
        assert event.cost_limit == Money(2000, "EUR")
        # The command is in the journal before the event was posted.
        [journaled] = channel.journal.unanswered_commands()
        assert journaled["command_id"] == start
        stop = gateway.commands.stop("web-chan-0001")
        assert stop is None  # not started yet: nothing to stop
    finally:
        channel.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_back_off_is_bounded_and_jittered() -> None:
    channel = CommandChannel.__new__(CommandChannel)
    channel.rng = random.Random(3)
    channel.backoff_base_ms, channel.backoff_cap_ms = 1_000, 60_000
    for failures in range(40):
        channel.failures = failures
        ceiling = min(60_000, 1_000 * 2 ** min(failures, 20))
        assert ceiling // 2 <= channel.backoff_ms() <= ceiling


def test_the_channel_reconnects_when_the_gateway_is_back(
    gateway: EmbeddedGateway, tmp_path: Path
) -> None:
    events: queue.Queue[Event] = queue.Queue()
    channel = channel_to(
        gateway, tmp_path, events, wait_s=1, backoff_base_ms=50, backoff_cap_ms=200
    )
    gateway.down()
    thread = running(channel)
    try:
        deadline = threading.Event()
        for _ in range(200):
            if channel.failures >= 3:
                break
            deadline.wait(0.05)
        assert channel.failures >= 3  # refused connections, tried again and again
        start = paid(gateway, "web-chan-0002")
        gateway.up()
        event = events.get(timeout=30)
        assert isinstance(event, WebPaymentAuthorized) and event.command_id == start
    finally:
        channel.stop()
        thread.join(timeout=30)
    assert channel.failures == 0


@pytest.mark.parametrize(
    "item",
    [
        {"kind": "launch", "command_id": "command-0001", "session_id": "session-0001"},
        {"kind": "start", "command_id": "x", "session_id": "session-0001"},
        {"kind": "start", "command_id": "command-0001", "session_id": "session-0001"},
        {
            "kind": "start",
            "command_id": "command-0001",
            "session_id": "session-0001",
            "expires_in_ms": 60_000,
            "cost_limit": {"minor": "2000", "currency": "EUR"},
        },
        {
            "kind": "start",
            "command_id": "command-0001",
            "session_id": "session-0001",
            "expires_in_ms": 60_000,
            "cost_limit": {"minor": 2000, "currency": "XYZ"},
        },
        {"kind": "stop", "command_id": "command-0001", "session_id": "session 1"},
    ],
)
def test_a_malformed_command_is_not_journaled_nor_posted(
    tmp_path: Path, item: dict[str, object]
) -> None:
    events: queue.Queue[Event] = queue.Queue()
    channel = CommandChannel(
        Journal(tmp_path / "journal.sqlite3"),
        GatewayClient("http://127.0.0.1:9", timeout_ms=1_000),
        ManualClock(),
        events.put,
        terminal_id=TERMINAL,
    )
    assert not channel.receive(item)
    assert events.empty()
    assert channel.journal.unanswered_commands() == []
    assert channel.journal.outbox() == []


def test_a_stop_is_answered_on_receipt_and_posted(tmp_path: Path) -> None:
    events: queue.Queue[Event] = queue.Queue()
    channel = CommandChannel(
        Journal(tmp_path / "journal.sqlite3"),
        GatewayClient("http://127.0.0.1:9", timeout_ms=1_000),
        ManualClock(),
        events.put,
        terminal_id=TERMINAL,
    )
    item = {"kind": "stop", "command_id": "command-0002", "session_id": "session-0002"}
    assert channel.receive(item)
    assert isinstance(events.get_nowait(), StopRequested)
    [row] = channel.journal.outbox()
    assert (row["lane"], row["kind"], row["path"]) == (
        "session-0002",
        "command_answer",
        "/v1/commands/command-0002/answer",
    )
    assert not channel.receive(item)  # sent again: known, nothing more
