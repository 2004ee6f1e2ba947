"""Simulated cards as data files: a profile is a header and a script of APDU exchanges.

File format (``hardware/sim/cards/<name>.card``), one item a line, ``#`` starts a comment::

    name: visa                      # must equal the file name without .card
    kind: iso-dep                   # iso-dep (speaks APDUs) or uid (MIFARE/NTAG: UID only)
    uid: 08A1B2C3                   # hex; 08.. is an ISO 14443-3 random UID
    description: free text
    replay: strict                  # strict (default) or lenient, see below
    expect-outcome: APPROVED_FOR_ONLINE   # what the kernel should make of it
    expect-brand: Visa
    expect-last4: 0010
    expect-expiry: 2049-12
    send: 00 A4 04 00 0E 32 50 41 59 2E 53 59 53 2E 44 44 46 30 31 00
    resp: 6F 23 ... 90 00

``send:``/``resp:`` pairs are the format of the recorded traces in the conformance set, so a
trace replays unchanged (hex with or without spaces, ``resp:`` with or without a space).

In a ``send:`` line, ``..`` matches any one byte and a final ``*`` any remaining bytes, for
commands whose data varies (GET PROCESSING OPTIONS and GENERATE AC carry the date and the
unpredictable number); an empty ``send:`` matches any command, as in the recorded traces.
A ``resp:`` line is hex (a malformed answer is just written as such), or one of:

- ``gone``: the card leaves the field when this command arrives (tearing): `transceive`
  raises `CardGone`, now and for every later command;
- ``mute``: the card does not answer: `transceive` raises `ReaderFault` (a timeout).

Replay: ``strict`` answers only the next exchange of the script; ``lenient`` (for recorded
traces, where the recording terminal sent commands ours does not, such as GET DATA for the
CPLC) skips forward to the first exchange that matches exactly, or failing that to the first
wildcard that matches. Either way the script never runs
backwards, and a command no remaining exchange matches gets the status a real card would
give: 6A82 for SELECT, 6A83 for READ RECORD, 6A88 for GET DATA, 6D00 otherwise.

The simulator sits below `terminal/` (docs/architecture.md, layers), so its errors are its own:
`ProfileError` names the file and line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from hardware.ports import CardGone, ReaderFault

PROFILES_DIR = Path(__file__).parent / "cards"
SUFFIX = ".card"

_KINDS = ("iso-dep", "uid")
_REPLAYS = ("strict", "lenient")
_HEADER_KEYS = (
    "name",
    "kind",
    "uid",
    "description",
    "replay",
    "expect-outcome",
    "expect-brand",
    "expect-last4",
    "expect-expiry",
)
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*:(.*)$")
_HEX_TOKEN = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")

# What a card answers to a command it has no script for (ISO/IEC 7816-4 5.1.3).
_UNSCRIPTED_SW = {
    0xA4: b"\x6a\x82",  # SELECT: file or application not found
    0xB2: b"\x6a\x83",  # READ RECORD: record not found
    0xCA: b"\x6a\x88",  # GET DATA: referenced data not found
}
_INS_NOT_SUPPORTED = b"\x6d\x00"


class ProfileError(ValueError):
    """A card profile file is invalid; the message names the file and line."""

    def __init__(self, where: str, line_no: int, problem: str) -> None:
        super().__init__(f"{where}:{line_no}: {problem}")
        self.line_no = line_no


class Reply(enum.Enum):
    """What the card does with a matching command."""

    ANSWER = "answer"
    GONE = "gone"
    MUTE = "mute"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One scripted command and the card's reply. `pattern` holds the command bytes, None
    where any byte matches; `open_ended` lets any further bytes follow."""

    line_no: int
    pattern: tuple[int | None, ...]
    open_ended: bool
    reply: Reply
    response: bytes = b""

    @property
    def exact(self) -> bool:
        """Whether the pattern names every byte of the command."""
        return not self.open_ended and None not in self.pattern

    def matches(self, apdu: bytes) -> bool:
        """Whether the command `apdu` is the one this exchange expects."""
        if len(apdu) < len(self.pattern) or (
            not self.open_ended and len(apdu) != len(self.pattern)
        ):
            return False
        return all(
            want is None or want == got for want, got in zip(self.pattern, apdu, strict=False)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CardProfile:
    """A simulated card: identity, what tests expect the kernel to read, and its script."""

    name: str
    kind: str
    uid: bytes
    description: str = ""
    replay: str = "strict"
    expect_outcome: str | None = None
    expect_brand: str | None = None
    expect_last4: str | None = None
    expect_expiry: str | None = None
    script: tuple[Exchange, ...] = ()

    @property
    def iso_dep(self) -> bool:
        """Whether the card speaks ISO 14443-4 (APDUs)."""
        return self.kind == "iso-dep"

    def card(self) -> ScriptedCard:
        """A fresh card that replays this profile from the start."""
        return ScriptedCard(self)


class ScriptedCard:
    """Implements `hardware.ports.CardTarget` by replaying a `CardProfile`.

    `history` records every (command, response) pair, response None where the card left the
    field or stayed mute; `finished` says the whole script was used; `remove()` takes the
    card out of the field from a test, so the next `transceive` raises `CardGone`.
    """

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self.history: list[tuple[bytes, bytes | None]] = []
        self.removed = False
        self._cursor = 0

    @property
    def uid(self) -> bytes:
        return self.profile.uid

    @property
    def iso_dep(self) -> bool:
        return self.profile.iso_dep

    @property
    def finished(self) -> bool:
        """Every exchange of the script has been used (or skipped over, when lenient)."""
        return self._cursor >= len(self.profile.script)

    def remove(self) -> None:
        """The card leaves the field."""
        self.removed = True

    def power_lost(self) -> None:
        """The reader's field went off under the card (an emulated reader calls this). A
        contactless card is powered by the field and keeps no transaction state without it
        (ISO/IEC 14443-3: it comes back in the IDLE state), so the next command starts the
        script again from the top, as a new transaction. `history` keeps every exchange."""
        self._cursor = 0

    def transceive(self, apdu: bytes) -> bytes:
        """Answer `apdu` from the script; see the module docstring for the rules."""
        command = bytes(apdu)
        if not self.profile.iso_dep:
            raise ReaderFault(f"card {self.profile.name} does not speak ISO-DEP")
        if self.removed:
            self.history.append((command, None))
            raise CardGone(f"card {self.profile.name} left the field")
        index = self._find(command)
        if index is None:
            response = _unscripted(command)
            self.history.append((command, response))
            return response
        exchange = self.profile.script[index]
        self._cursor = index + 1
        if exchange.reply is Reply.GONE:
            self.removed = True
            self.history.append((command, None))
            raise CardGone(f"card {self.profile.name} left the field")
        if exchange.reply is Reply.MUTE:
            self.history.append((command, None))
            raise ReaderFault(f"card {self.profile.name} did not answer")
        self.history.append((command, exchange.response))
        return exchange.response

    def _find(self, command: bytes) -> int | None:
        script = self.profile.script
        if self.profile.replay == "strict":
            if self._cursor < len(script) and script[self._cursor].matches(command):
                return self._cursor
            return None
        ahead = range(self._cursor, len(script))
        # an exact exchange further on beats a wildcard nearer (an empty send: in a recording
        # must not swallow a command the recording answered exactly later)
        for index in ahead:
            if script[index].exact and script[index].matches(command):
                return index
        for index in ahead:
            if script[index].matches(command):
                return index
        return None


def _unscripted(command: bytes) -> bytes:
    ins = command[1] if len(command) > 1 else -1
    return _UNSCRIPTED_SW.get(ins, _INS_NOT_SUPPORTED)


def parse_profile(text: str, *, where: str = "<profile>") -> CardProfile:
    """Parse the text of a profile. Raises `ProfileError` naming `where` and the line."""
    header: dict[str, str] = {}
    script: list[Exchange] = []
    pending: tuple[int, tuple[int | None, ...], bool] | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ProfileError(where, line_no, f"not a 'key: value' line: {line!r}")
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "send":
            if pending is not None:
                raise ProfileError(where, line_no, "send: without resp: before it")
            pattern, open_ended = _parse_pattern(value, where, line_no)
            pending = (line_no, pattern, open_ended)
        elif key == "resp":
            if pending is None:
                raise ProfileError(where, line_no, "resp: without send:")
            script.append(_exchange(pending, value, where, line_no))
            pending = None
        elif key in _HEADER_KEYS:
            if key in header:
                raise ProfileError(where, line_no, f"{key} given twice")
            header[key] = value
        else:
            raise ProfileError(where, line_no, f"unknown key {key!r}")
    if pending is not None:
        raise ProfileError(where, pending[0], "send: without resp:")
    return _profile(header, tuple(script), where)


def load_profile(path: Path | str) -> CardProfile:
    """Load one ``.card`` file; its ``name:`` must equal the file name."""
    file = Path(path)
    profile = parse_profile(file.read_text(encoding="utf-8"), where=str(file))
    if profile.name != file.name.removesuffix(SUFFIX):
        raise ProfileError(str(file), 0, f"name {profile.name!r} does not match the file name")
    return profile


def load_profiles(directory: Path | str = PROFILES_DIR) -> dict[str, CardProfile]:
    """Every ``*.card`` profile in `directory`, by name, sorted by name."""
    return {
        profile.name: profile
        for profile in (load_profile(path) for path in sorted(Path(directory).glob("*" + SUFFIX)))
    }


def load_named(name: str, directory: Path | str = PROFILES_DIR) -> CardProfile:
    """The profile called `name` (``visa``, ``mastercard`` ...) from `directory`."""
    path = Path(directory) / (name + SUFFIX)
    if not path.is_file():
        raise ProfileError(str(path), 0, f"no card profile named {name!r}")
    return load_profile(path)


def _parse_pattern(value: str, where: str, line_no: int) -> tuple[tuple[int | None, ...], bool]:
    tokens = value.split()
    if not tokens:
        return (), True  # an empty send: matches any command, as in the recorded traces
    open_ended = tokens[-1] == "*"
    if open_ended:
        tokens = tokens[:-1]
    pattern: list[int | None] = []
    for token in tokens:
        if token == "..":
            pattern.append(None)
        elif _HEX_TOKEN.match(token):
            pattern.extend(bytes.fromhex(token))
        else:
            raise ProfileError(where, line_no, f"bad byte {token!r} in send:")
    return tuple(pattern), open_ended


def _exchange(
    pending: tuple[int, tuple[int | None, ...], bool], value: str, where: str, line_no: int
) -> Exchange:
    send_line, pattern, open_ended = pending
    word = value.lower()
    if word in (Reply.GONE.value, Reply.MUTE.value):
        return Exchange(
            line_no=send_line, pattern=pattern, open_ended=open_ended, reply=Reply(word)
        )
    tokens = value.split()
    if not tokens or not all(_HEX_TOKEN.match(token) for token in tokens):
        raise ProfileError(where, line_no, "resp: must be hex bytes, 'gone' or 'mute'")
    response = bytes.fromhex("".join(tokens))
    if len(response) < 2:
        raise ProfileError(where, line_no, "resp: needs at least the status word")
    return Exchange(
        line_no=send_line,
        pattern=pattern,
        open_ended=open_ended,
        reply=Reply.ANSWER,
        response=response,
    )


def _profile(header: dict[str, str], script: tuple[Exchange, ...], where: str) -> CardProfile:
    for key in ("name", "kind", "uid"):
        if not header.get(key):
            raise ProfileError(where, 0, f"missing {key}:")
    kind = header["kind"]
    if kind not in _KINDS:
        raise ProfileError(where, 0, f"kind must be one of {', '.join(_KINDS)}")
    replay = header.get("replay", "strict")
    if replay not in _REPLAYS:
        raise ProfileError(where, 0, f"replay must be one of {', '.join(_REPLAYS)}")
    uid_hex = header["uid"].replace(" ", "")
    if not _HEX_TOKEN.match(uid_hex) or len(uid_hex) not in (8, 14, 20):
        raise ProfileError(where, 0, "uid must be 4, 7 or 10 bytes of hex (ISO 14443-3)")
    if kind == "uid" and script:
        raise ProfileError(where, script[0].line_no, "a uid card has no APDU script")
    expiry = header.get("expect-expiry")
    if expiry is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", expiry):
        raise ProfileError(where, 0, "expect-expiry must be YYYY-MM")
    last4 = header.get("expect-last4")
    if last4 is not None and not re.fullmatch(r"\d{4}", last4):
        raise ProfileError(where, 0, "expect-last4 must be four digits")
    return CardProfile(
        name=header["name"],
        kind=kind,
        uid=bytes.fromhex(uid_hex),
        description=header.get("description", ""),
        replay=replay,
        expect_outcome=header.get("expect-outcome"),
        expect_brand=header.get("expect-brand"),
        expect_last4=last4,
        expect_expiry=expiry,
        script=script,
    )
