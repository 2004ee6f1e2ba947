"""The contactless card reader: nfcpy driving an NXP PN532 over a UART. Implements `CardReader`.

Opening. `path` is nfcpy's `tty:<port>:pn532` (`tty:AMA0:pn532` is /dev/ttyAMA0, `tty:S0:pn532`
/dev/ttyS0; nfcpy's rule: S, ACM, AMA and USB with a number get the "tty" prefix, any other
name is taken from /dev as is) or a device path (/dev/serial0, /dev/serial/by-id/...).
nfcpy's own path search (`ContactlessFrontend.open`) cannot name a pty (/dev/pts/5 has a slash
its path grammar does not allow) and reads only /dev, so the reader resolves the path itself
and opens it through nfcpy's documented pieces: the serial transport (`nfc.clf.transport.TTY`)
and the PN532 driver's `init`, exactly what `ContactlessFrontend.open` does for a tty path.
The PN532 driver passes the port name to a shell (`stty -F <port>`, to probe for a faster baud
rate), so only plain path characters are accepted.

Polling. `poll` runs nfcpy's `sense` for 106 kbit/s Type A and Type B, one round at a time
(each round is a few PN532 commands, milliseconds on a UART), and waits `scan_interval_s`
between rounds on an event that `close` sets, so it returns within about `timeout` and at once
after `close`. nfcpy's `connect()` is not used: it returns only when its `terminate` callback
is asked between rounds of five sense iterations half a second apart, waits for the card to
leave before returning, and turns a dead reader into a `False` return.

Cards. ISO-DEP cards (Type 4A/4B: payment cards, phones) are activated by nfcpy (RATS or
ATTRIB) and exchange APDUs through `nfc.tag.tt4.Type4Tag.transceive`, which does the ISO-DEP
block protocol (chaining, R(NAK) retries, waiting-time extensions). Other Type A targets
(MIFARE Classic, Ultralight, NTAG) are returned with their UID only (`iso_dep` False); they
carry no APDUs, so their `transceive` raises `CardGone` as the card would fall silent.
A card is returned once: afterwards each poll checks that it is still there (an ISO-DEP
presence check with R(NAK) - ISO/IEC 14443-4 7.5.4.2 - or, for UID-only cards, re-selecting
that UID) and looks for new cards only after it has gone. Its `transceive` then raises
`CardGone`. That holds across a reader failure: a card returned earlier that was in the field,
its caller done with it, when the reader failed (the failure came in its presence check, not
in an exchange) is taken to be the first card found once the reader is open again, and is held
without being returned until the field is empty (a random UID cannot tell it from another card;
an empty field can). A card that arrived while the reader was down is returned as it opens; so
is a card whose exchange the failure broke off (its tap never finished).

Failures. The PN532 must acknowledge each command within 100 ms and nfcpy bounds every answer,
so a reader that stops answering surfaces as an I/O error within a bounded time; `poll` and
`transceive` raise `ReaderFault`, the reader is closed and re-opened by later polls with an
exponential back-off. While it is down, `poll` waits (up to `timeout`) for the next attempt
and raises `ReaderFault` again if it fails, so a caller that keeps polling neither spins nor
hangs. A card held across a reader failure answers `ReaderFault`. One limit remains inside
nfcpy: a card that keeps asking for waiting-time extensions (S(WTX)) keeps one `transceive`
going; the caller's own transaction timer has to cover that.

Threads. `poll` runs on the reader's device thread; `transceive` may run on another. One lock
serialises every nfcpy call, so a presence check never interleaves with an exchange; `poll`
waits for that lock only until its deadline.

Logging. nfcpy logs the frames it exchanges - APDUs, hence PANs and track 2 equivalent data -
at DEBUG (`nfc.clf` exchange, `nfc.tag.tt4` transceive, target UIDs in `nfc.clf` sense) and
below DEBUG (`nfc.clf.transport`, `nfc.clf.pn532` frame dumps). The reader therefore holds the
`nfc` logger tree at WARNING (`hold_nfcpy_logging_at_warning`, run whenever the reader opens):
at WARNING and above nfcpy 1.0.4 logs only error descriptions, never frame contents. This
module logs reader events (opened, lost, card arrived, card left) and never a card's UID or data.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import termios
import threading
import time
from typing import Any

import nfc
import nfc.clf
import nfc.clf.pn53x
import nfc.clf.pn532
import nfc.clf.transport
import nfc.tag
import nfc.tag.tt4

from drivers.ats import ats_completed
from drivers.backoff import Backoff
from hardware.ports import CardGone, CardTarget, ReaderFault

log = logging.getLogger(__name__)

NFCPY_LOGGER = "nfc"
SCAN_INTERVAL_S = 0.05  # between sense rounds and presence checks: 20 a second
CLOSE_WAIT_S = 2.0  # longest any one nfcpy call lasts with a PN532 that stopped answering
# ISO/IEC 14443-3 6.5.3.3: SEL_RES bit 6 set means the card is ISO/IEC 14443-4 compliant.
SEL_RES_ISO_DEP = 0x20
# nfcpy's tty naming (nfc/clf/transport.py, TTY.find): these names get a "tty" prefix.
NFCPY_TTY_NAME = re.compile(r"^(S|ACM|AMA|USB)\d+$")
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")

# nfcpy reports a dead or confused PN532 as an I/O error (OSError, pyserial's SerialException
# included), a termios error from the vanished port, or a chipset error frame; everything that
# went wrong on the air is a CommunicationError or a TagCommandError.
HOST_LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    termios.error,
    nfc.clf.pn53x.Chipset.Error,
)
AIR_ERRORS: tuple[type[BaseException], ...] = (
    nfc.clf.CommunicationError,
    nfc.tag.TagCommandError,
    IndexError,  # nfcpy indexes into short or malformed card answers without checking
)


def hold_nfcpy_logging_at_warning() -> None:
    """Keep nfcpy from logging card data: its loggers below WARNING carry frame contents."""
    logging.getLogger(NFCPY_LOGGER).setLevel(logging.WARNING)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            name.startswith(NFCPY_LOGGER + ".")
            and isinstance(logger, logging.Logger)
            and logging.NOTSET < logger.level < logging.WARNING
        ):
            logger.setLevel(logging.WARNING)


def resolve_port(path: str) -> str:
    """The serial device for `path` (`tty:<port>[:pn532]` or an absolute device path)."""
    if path.startswith("/"):
        port = path
    else:
        parts = path.split(":")
        if parts[0] != "tty" or len(parts) not in (2, 3) or not parts[1]:
            raise ValueError(f"reader path {path!r}: expected tty:<port>:pn532 or /dev/...")
        if len(parts) == 3 and parts[2] != "pn532":
            raise ValueError(f"reader path {path!r}: only the pn532 driver is supported")
        name = parts[1]
        if not PLAIN_NAME.match(name):
            raise ValueError(f"reader path {path!r}: unexpected characters in the port name")
        port = "/dev/tty" + name if NFCPY_TTY_NAME.match(name) else "/dev/" + name
    if not PLAIN_PATH.match(port) or "/../" in port:
        raise ValueError(f"reader path {path!r}: only plain path characters are accepted")
    return port


class _Link(enum.Enum):
    """Whether a card returned by `poll` can still be talked to."""

    LIVE = "live"
    GONE = "gone"  # the card left the field (or stopped answering)
    LOST = "lost"  # the reader failed, was re-opened or closed under the card


class NfcCard:
    """A card returned by `NfcReader.poll`. Implements `hardware.ports.CardTarget`."""

    def __init__(self, reader: NfcReader, *, uid: bytes, tag: Any | None) -> None:
        self._reader = reader
        self._uid = uid
        self._tag = tag  # an nfc.tag.tt4.Type4Tag for ISO-DEP cards, else None
        self._link = _Link.LIVE

    @property
    def uid(self) -> bytes:
        return self._uid

    @property
    def iso_dep(self) -> bool:
        return self._tag is not None

    def transceive(self, apdu: bytes) -> bytes:
        return self._reader._transceive(self, apdu)

    def __repr__(self) -> str:  # no UID: on a fleet token it is the identifier
        return f"NfcCard(iso_dep={self.iso_dep}, link={self._link.value})"


class NfcReader:
    """A PN532 reader on a serial port, through nfcpy. See the module docstring for the rules.

    Nothing is opened until the first `poll`, so a reader missing at start-up is a
    `ReaderFault` from `poll`, not an error while the daemon is being built."""

    def __init__(
        self,
        path: str,
        *,
        scan_interval_s: float = SCAN_INTERVAL_S,
        backoff: Backoff | None = None,
    ) -> None:
        self.port = resolve_port(path)
        self._scan_interval_s = scan_interval_s
        self._backoff = backoff or Backoff()
        self._io = threading.Lock()  # held for every nfcpy call
        self._closed = threading.Event()
        self._clf: Any | None = None  # nfc.ContactlessFrontend
        self._transport: Any | None = None  # nfc.clf.transport.TTY
        self._held: NfcCard | None = None
        # A card returned earlier was in the field, and not being talked to, when the reader
        # failed: the first card found once it is open again is taken to be that one.
        self._kept_across_fault = False
        self._failures = 0
        self._next_open_at = 0.0
        hold_nfcpy_logging_at_warning()

    # -- the port ------------------------------------------------------------------------------

    def poll(self, timeout: float) -> CardTarget | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._closed.is_set():
            now = time.monotonic()
            if self._clf is None and now < self._next_open_at:
                if self._next_open_at > deadline:
                    if self._closed.wait(max(deadline - now, 0.0)):
                        return None
                    raise ReaderFault(f"card reader on {self.port} is not answering")
                self._closed.wait(self._next_open_at - now)
                continue
            if not self._io.acquire(timeout=max(deadline - now, 0.0)):
                return None  # an exchange with the card in the field is still running
            try:
                if self._closed.is_set():
                    self._shut()
                    return None
                if self._clf is None:
                    self._open()
                card = self._scan()
            finally:
                self._io.release()
            if card is not None:
                return card
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._closed.wait(min(self._scan_interval_s, remaining))
        return None

    def close(self) -> None:
        self._closed.set()
        if self._io.acquire(timeout=CLOSE_WAIT_S):
            try:
                self._shut()
            finally:
                self._io.release()
        else:  # the thread holding the reader shuts it when its call returns
            log.warning("event=reader_close_deferred port=%s", self.port)

    # -- opening and losing the reader (callers hold self._io) --------------------------------

    def _open(self) -> None:
        hold_nfcpy_logging_at_warning()
        transport = None
        try:
            transport = nfc.clf.transport.TTY(self.port)
            device = nfc.clf.pn532.init(transport)
        except HOST_LINK_ERRORS as error:
            if transport is not None:
                _close_transport(transport)
            self._failures += 1
            delay = self._backoff.delay(self._failures)
            self._next_open_at = time.monotonic() + delay
            log.warning(
                "event=reader_open_failed port=%s error=%s retry_in_s=%.1f",
                self.port,
                type(error).__name__,
                delay,
            )
            raise ReaderFault(f"card reader on {self.port} did not open: {error}") from error
        device._path = self.port  # set by nfcpy's own open; its log messages read it
        clf = nfc.ContactlessFrontend()
        clf.device = device
        self._clf, self._transport = clf, transport
        self._failures = 0
        log.info("event=reader_opened port=%s chipset=%s", self.port, device.chipset_name)

    def _lose(self, error: BaseException) -> ReaderFault:
        """The reader failed: drop it and schedule a re-open. Returns the error to raise."""
        self._drop_device()
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        self._next_open_at = time.monotonic() + delay
        log.warning(
            "event=reader_lost port=%s error=%s retry_in_s=%.1f",
            self.port,
            type(error).__name__,
            delay,
        )
        return ReaderFault(f"card reader on {self.port} stopped answering: {error}")

    def _shut(self) -> None:
        if self._clf is not None:
            log.info("event=reader_closed port=%s", self.port)
        self._drop_device()

    def _drop_device(self) -> None:
        if self._held is not None:
            self._held._link = _Link.LOST
            self._held = None
        clf, transport = self._clf, self._transport
        self._clf = self._transport = None
        if clf is not None:
            try:
                clf.close()  # cancels the last command and powers the PN532 down
            except HOST_LINK_ERRORS as error:
                log.info("event=reader_power_down_failed error=%s", type(error).__name__)
        if transport is not None:
            _close_transport(transport)

    # -- finding cards (callers hold self._io) ------------------------------------------------

    def _scan(self) -> NfcCard | None:
        clf = self._clf
        assert clf is not None
        try:
            if self._held is not None:
                if self._still_there(self._held):
                    return None
                self._held._link = _Link.GONE
                self._held = None
                log.info("event=card_left")
            target = clf.sense(
                nfc.clf.RemoteTarget("106A"), nfc.clf.RemoteTarget("106B"), iterations=1
            )
            card = self._activate(target) if target is not None else None
        except HOST_LINK_ERRORS as error:
            # Failing in the presence check of a card returned earlier: its caller is done
            # with it (an exchange that fails is `_exchange`'s), and it is still in the field.
            self._kept_across_fault |= self._held is not None
            raise self._lose(error) from error
        if self._kept_across_fault and target is None:
            self._kept_across_fault = False  # the field is empty: that card has gone
            log.info("event=card_left")
        if card is None:
            return None
        self._held = card
        if self._kept_across_fault:
            # The port's rule holds across a reader failure: a card stays returned once until it
            # leaves (a random UID cannot tell it from another card; an empty field can).
            self._kept_across_fault = False
            log.info("event=card_still_in_field iso_dep=%s", card.iso_dep)
            return None
        log.info("event=card_arrived iso_dep=%s", card.iso_dep)
        return card

    def _activate(self, target: Any) -> NfcCard | None:
        iso_dep = target.brty.endswith("B") or bool(
            target.sel_res and target.sel_res[0] & SEL_RES_ISO_DEP
        )
        if not iso_dep:
            # Type 1 tags (no SDD_RES) carry no NFCID1 we could use; nothing to return.
            return NfcCard(self, uid=bytes(target.sdd_res), tag=None) if target.sdd_res else None
        try:
            with ats_completed(self._clf):  # nfcpy misreads an ATS without TA or TB
                tag = nfc.tag.activate(self._clf, target)
        except AIR_ERRORS as error:
            log.info("event=card_activation_failed error=%s", type(error).__name__)
            return None
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            return None
        return NfcCard(self, uid=bytes(tag.identifier), tag=tag)

    def _still_there(self, card: NfcCard) -> bool:
        if card._tag is not None:
            return bool(card._tag.is_present)
        clf = self._clf
        assert clf is not None
        again = nfc.clf.RemoteTarget("106A", sel_req=bytearray(card.uid))
        return clf.sense(again, iterations=1) is not None

    # -- exchanging APDUs ----------------------------------------------------------------------

    def _transceive(self, card: NfcCard, apdu: bytes) -> bytes:
        with self._io:
            try:
                return self._exchange(card, apdu)
            finally:
                if self._closed.is_set():
                    self._shut()

    def _exchange(self, card: NfcCard, apdu: bytes) -> bytes:
        if card._link is _Link.GONE:
            raise CardGone("the card left the field")
        if card._link is _Link.LOST or self._clf is None:
            raise ReaderFault(f"card reader on {self.port} lost the card's session")
        if card._tag is None:
            raise CardGone("this card carries no APDUs (not ISO-DEP); it does not answer")
        try:
            answer = card._tag.transceive(bytearray(apdu))
        except AIR_ERRORS as error:
            card._link = _Link.GONE
            if self._held is card:
                self._held = None
            raise CardGone(f"the card stopped answering ({type(error).__name__})") from error
        except HOST_LINK_ERRORS as error:
            raise self._lose(error) from error
        return bytes(answer)


def _close_transport(transport: Any) -> None:
    """Close nfcpy's serial transport without its flush, which fails on a vanished device."""
    port = getattr(transport, "tty", None)  # the pyserial port nfcpy's TTY transport holds
    transport.tty = None
    if port is not None:
        with contextlib.suppress(OSError, termios.error):
            port.close()
