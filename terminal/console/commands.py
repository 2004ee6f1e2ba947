"""The console's command table: a name, usage, one line of help, whether it needs the
technician PIN, and the function that runs it. `help` is generated from the table.

Commands read `Daemon.status()` snapshots or ask the daemon thread (events); none touches the
kiosk's state. Nothing printed here carries card data: the status has no card, a reader test
names the card's kind and brand only, and the log holds no card data by rule.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from terminal.core.current import MIN_OFFER_A
from terminal.core.events import (
    CurrentLimited,
    Diagnostic,
    OutOfServiceChanged,
    SignedReadingRequested,
)

if TYPE_CHECKING:
    from terminal.config import Config
    from terminal.console.console import Console
    from terminal.shell.daemon import Status

SESSION_PHASES = ("Authorizing", "AwaitingVehicle", "Charging", "Suspended", "Finishing")
DEFAULT_LOG_LINES = 20
_SECRET_NAME = re.compile(r"(secret|password|passphrase|token|pin|credential|psk|private)", re.I)
_URL_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    name: str  # one or two words: "status", "relay test"
    usage: str  # arguments, e.g. "on|off"
    help: str
    privileged: bool
    run: Callable[[Console, list[str]], None]


class CommandTable:
    def __init__(self, commands: list[Command]) -> None:
        self.commands = commands

    def find(self, words: list[str]) -> tuple[Command | None, list[str]]:
        """The command whose name starts the line (the longest such name) and its arguments."""
        lowered = [w.lower() for w in words]
        best: Command | None = None
        for command in self.commands:
            name = command.name.split()
            if lowered[: len(name)] == name and (
                best is None or len(name) > len(best.name.split())
            ):
                best = command
        if best is None:
            return None, []
        return best, words[len(best.name.split()) :]

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands)


# -- read-only ---------------------------------------------------------------------------------


def _help(c: Console, args: list[str]) -> None:
    if args:
        command, _ = COMMANDS.find(args)
        if command is None:
            c.out(f"no such command: {' '.join(args)}")
            return
        lock = " (needs login)" if command.privileged else ""
        c.out(f"{command.name} {command.usage}".rstrip() + f"{lock}\n  {command.help}")
        return
    c.out("commands (* needs the technician PIN: login):")
    for command in COMMANDS:
        usage = f"{command.name} {command.usage}".rstrip()
        c.out(f"  {'*' if command.privileged else ' '} {usage:<24} {command.help}")
    c.out("keys: backspace, ^W word, ^U line, ^C cancel")


def _yes_no(value: bool | None, yes: str, no: str, unknown: str = "unknown") -> str:
    return unknown if value is None else (yes if value else no)


def _age(oldest: str | None, now: datetime) -> str:
    if oldest is None:
        return ""
    try:
        seconds = int((now - datetime.fromisoformat(oldest)).total_seconds())
    except ValueError:
        return f", oldest {oldest}"
    return f", oldest {_duration(max(seconds, 0))} old"


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def status_rows(s: Status, now: datetime, version: str) -> list[tuple[str, str]]:
    """The kiosk's status as labelled lines (the console's `status`, the demo's too)."""
    meter = (
        f"{s.register_wh} Wh (register at last read)" if s.register_wh is not None else "no reading"
    )
    return [
        ("state", f"{s.phase} (screen {s.screen or 'none'})"),
        ("vehicle", f"pilot {s.pilot}"),
        (
            "contactor",
            f"{'closed' if s.contactor_closed else 'open'} (commanded), feedback "
            + _yes_no(s.feedback_closed, "closed", "open", "not read yet"),
        ),
        ("faults", ", ".join(s.faults) or "none"),
        ("service", "OUT OF SERVICE" if s.out_of_service else "in service"),
        ("meter", meter),
        ("reader", "ok" if s.reader_ok else "NOT ANSWERING"),
        ("gateway", _yes_no(s.gateway_reachable, "reachable", "UNREACHABLE", "not contacted yet")),
        ("queue", f"{s.queue_depth} unsent{_age(s.oldest_unsent, now)}"),
        ("version", version),
        ("uptime", _duration(s.uptime_s)),
    ]


def _status(c: Console, args: list[str]) -> None:
    for label, value in status_rows(c.daemon.status(), c.daemon.clock.now(), c.version):
        c.out(f"{label:<10} {value}")


def _selftest(c: Console, args: list[str]) -> None:
    c.out("self-test: each device once ...")
    reply = c.request(Diagnostic.SELFTEST)
    if reply is not None:
        c.out(reply.text)
        c.out("self-test: PASS" if reply.ok else "self-test: FAIL")


def _meter(c: Console, args: list[str]) -> None:
    if args == ["signed"]:
        # A signed (OCMF) reading of the running session, queued for the gateway.
        c.report("technician", "command=meter_signed")
        c.daemon.post(SignedReadingRequested(**c.daemon.stamp()))
        c.out("meter: signed reading requested (taken only while a session runs)")
        return
    if args:
        c.out("usage: meter [signed]")
        return
    reply = c.request(Diagnostic.METER)
    if reply is not None:
        c.out(reply.text)


def _queue(c: Console, args: list[str]) -> None:
    s = c.daemon.status()
    c.out(f"unsent    {s.queue_depth}{_age(s.oldest_unsent, c.daemon.clock.now())}")
    c.out(f"oldest    {s.oldest_unsent or '-'}")
    reachable = _yes_no(s.gateway_reachable, "reachable", "UNREACHABLE", "not contacted yet")
    c.out(f"gateway   {reachable}")


def _log(c: Console, args: list[str]) -> None:
    count = DEFAULT_LOG_LINES
    if args:
        if not args[0].isdigit():
            c.out("usage: log [N]")
            return
        count = min(int(args[0]), c.recent_log.capacity)
    for line in c.recent_log.lines(count):
        c.out(line)


def config_lines(config: Config) -> list[str]:
    """The effective configuration, one `key = value` a line, secrets redacted."""
    return [f"{key} = {_redact(key, value)}" for key, value in _flatten("", config)]


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            name = "hardware" if f.name == "settings" and prefix == "hardware" else f.name
            key = name if not prefix else (prefix if name == prefix else f"{prefix}.{name}")
            yield from _flatten(key, getattr(value, f.name))
    elif prefix.endswith("hardware") and isinstance(value, tuple):
        for k, v in value:
            yield from _flatten(f"{prefix}.{k}", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}", v)
    else:
        yield prefix, value


def _redact(key: str, value: Any) -> str:
    if _SECRET_NAME.search(key.rsplit(".", 1)[-1]):
        return "<redacted>"
    text = str(value)
    if "://" in text:
        text = _URL_USERINFO.sub(r"\1<redacted>@", text)
        if "?" in text:
            text = text.split("?", 1)[0] + "?<redacted>"
    return text


def _config(c: Console, args: list[str]) -> None:
    for line in config_lines(c.config):
        c.out(line)


def _login(c: Console, args: list[str]) -> None:
    c.begin_login()


def _logout(c: Console, args: list[str]) -> None:
    c.logout()


# -- privileged --------------------------------------------------------------------------------


def _relay_test(c: Console, args: list[str]) -> None:
    c.report("technician", "command=relay_test")
    c.out("relay test: close, check feedback, open, check feedback ...")
    reply = c.request(Diagnostic.RELAY)
    if reply is not None:
        c.out(reply.text)
        c.out("relay test: PASS" if reply.ok else "relay test: FAIL")


def _reader_test(c: Console, args: list[str]) -> None:
    window = c.settings.reader_window_s
    c.report("technician", "command=reader_test")
    c.out(f"reader test: present a card within {window:.0f} s (no session starts; ^C stops)")
    reply = c.request(Diagnostic.READER, window_s=window)
    if reply is not None:
        c.out(reply.text)
        c.out("reader test: PASS" if reply.ok else "reader test: FAIL")


def _sync_now(c: Console, args: list[str]) -> None:
    c.report("technician", "command=sync_now")
    c.daemon.sender.sync_now()
    s = c.daemon.status()
    c.out(f"sync: sending now; {s.queue_depth} unsent")


def _out_of_service(c: Console, args: list[str]) -> None:
    if args not in (["on"], ["off"]):
        c.out("usage: out-of-service on|off")
        return
    on = args[0] == "on"
    c.report("technician", f"command=out_of_service value={args[0]}")
    c.daemon.post(OutOfServiceChanged(on=on, **c.daemon.stamp()))
    running = c.daemon.status().phase in SESSION_PHASES
    if on and running:
        c.out("out of service: on, after the running session ends")
    else:
        c.out(f"out of service: {args[0]}")


MAX_LIMIT_A = 80  # the EVSE-DIN board's register 1000 takes 6..80 A (docs/drivers.md)


def _current_limit(c: Console, args: list[str]) -> None:
    """A technician's load limit (a fuse being changed, a site on a weak supply): the offer
    is lowered at once, also for a running session, and lifted with `off`. The same input a
    load manager would post (`CurrentLimited`); the installation's `max_current` still caps
    it, and no offer goes below 6 A (IEC 61851-1 Annex A)."""
    limit: int | None
    if args == ["off"]:
        limit = None
    elif len(args) == 1 and args[0].isdigit() and MIN_OFFER_A <= int(args[0]) <= MAX_LIMIT_A:
        limit = int(args[0])
    else:
        c.out(f"usage: current-limit {MIN_OFFER_A}..{MAX_LIMIT_A}|off (amperes)")
        return
    c.report("technician", f"command=current_limit value={args[0]}")
    c.daemon.post(CurrentLimited(limit_a=limit, **c.daemon.stamp()))
    c.out(f"current limit: {args[0]}{'' if limit is None else ' A'}")


def _reboot(c: Console, args: list[str]) -> None:
    if args not in ([], ["force"]):
        c.out("usage: reboot [force]")
        return
    phase = c.daemon.status().phase
    if phase in SESSION_PHASES and args != ["force"]:
        c.out(f"reboot refused: a session is running ({phase}); 'reboot force' ends it")
        return
    c.report("technician", f"command=reboot phase={phase}{' force' if args else ''}")
    c.out("restarting the kiosk service: the contactor opens first")
    c.restart()


COMMANDS = CommandTable(
    [
        Command(name="help", usage="[command]", help="this list", privileged=False, run=_help),
        Command(
            name="status",
            usage="",
            help="state, vehicle, contactor, meter, reader, gateway, queue, version, uptime",
            privileged=False,
            run=_status,
        ),
        Command(
            name="selftest",
            usage="",
            help="check every device once, pass/fail each",
            privileged=False,
            run=_selftest,
        ),
        Command(
            name="meter",
            usage="[signed]",
            help="read the meter now; `signed` queues a signed reading of the running session",
            privileged=False,
            run=_meter,
        ),
        Command(
            name="queue",
            usage="",
            help="unsent gateway requests and the oldest one's age",
            privileged=False,
            run=_queue,
        ),
        Command(
            name="log",
            usage="[N]",
            help=f"the last N log lines (default {DEFAULT_LOG_LINES})",
            privileged=False,
            run=_log,
        ),
        Command(
            name="config",
            usage="",
            help="the effective configuration, secrets redacted",
            privileged=False,
            run=_config,
        ),
        Command(
            name="login",
            usage="",
            help="enter the technician PIN",
            privileged=False,
            run=_login,
        ),
        Command(
            name="logout", usage="", help="end the technician login", privileged=False, run=_logout
        ),
        Command(
            name="relay test",
            usage="",
            help="close and open the contactor, checking its feedback (no vehicle, no session)",
            privileged=True,
            run=_relay_test,
        ),
        Command(
            name="reader test",
            usage="",
            help="detect a card and its kind, without reading card data",
            privileged=True,
            run=_reader_test,
        ),
        Command(
            name="sync now",
            usage="",
            help="send every queued request to the gateway now, back-off or not",
            privileged=True,
            run=_sync_now,
        ),
        Command(
            name="out-of-service",
            usage="on|off",
            help="take the kiosk out of service (a running session finishes first)",
            privileged=True,
            run=_out_of_service,
        ),
        Command(
            name="current-limit",
            usage=f"{MIN_OFFER_A}..{MAX_LIMIT_A}|off",
            help="limit the current the pilot offers, at once (a load limit), or lift it",
            privileged=True,
            run=_current_limit,
        ),
        Command(
            name="reboot",
            usage="[force]",
            help="restart the kiosk service (refused during a session unless forced)",
            privileged=True,
            run=_reboot,
        ),
    ]
)
