"""The OCPP 2.1 client: the kiosk as a charging station of the operator's CSMS.

It runs on its own thread with its own asyncio loop (docs/threads.md) and never touches the
machine's state: requests from the CSMS become events posted to the daemon's queue (the
machine decides), and answers that depend on the state read the daemon's snapshot. What it
sends comes from two places: the durable queue in the journal (transaction events and
settlements, sent strictly in order, each once the CSMS has answered the one before) and the
connection's own chatter (BootNotification, Heartbeat; the connector status is queued too
unless the CSMS turned `QueueAllMessages` off, see `reporter`).

Connection (OCPP 2.1 Part 4, OCPP-J): a WebSocket to `<url>/<station id>` with subprotocol
`ocpp2.1`. Security profile 1 and 2 send HTTP Basic auth (user: the station id, password from
`password_file`), 2 and 3 use TLS 1.2 or later with the CSMS's certificate checked against
`ca_file` (pinned), 3 presents the station's client certificate instead of a password. A lost
connection is retried with exponential back-off (capped) until `stop()`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import websockets
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hardware.clock import Clock
from terminal.config import OcppConfig
from terminal.core.actions import RequestAuthorization
from terminal.core.events import (
    AuthorizationAnswered,
    AuthOutcome,
    CostLimitSet,
    Event,
    Stamp,
    WebPaymentStarted,
)
from terminal.core.kiosk import Kiosk
from terminal.ocpp import messages
from terminal.ocpp.certificates import (
    CHARGING_STATION_CERTIFICATE,
    RenewalSchedule,
    StationCertificate,
)
from terminal.ocpp.device_model import DeviceModel
from terminal.ocpp.link import SIGN_CERTIFICATE, Link
from terminal.ocpp.queue import OcppQueue, QueuedMessage
from terminal.ocpp.reporter import Settings
from terminal.ocpp.rpc import SUBPROTOCOL, CallRefused, request

log = logging.getLogger("ev_terminal.ocpp")

T = TypeVar("T")

BACKOFF_S = (1.0, 60.0)  # first retry, cap
BOOT_RETRY_S = 10  # a BootNotification answered Pending/Rejected with interval 0
FIRMWARE = "ev-terminal 0.1.0"


class ConnectionLost(Exception):
    """The WebSocket closed while a request waited for its answer."""


def ssl_context(config: OcppConfig) -> ssl.SSLContext | None:
    """TLS for security profiles 2 and 3: TLS 1.2 or later (OCPP 2.1 A00.FR.3xx), the
    CSMS's certificate checked against the pinned CA and its host name; profile 3 presents
    the station's certificate."""
    if config.security_profile == 1:
        return None
    context = ssl.create_default_context(cafile=str(config.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.security_profile == 3:
        assert config.cert_file is not None and config.key_file is not None
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    return context


def basic_auth(config: OcppConfig) -> dict[str, str]:
    """HTTP Basic auth for profiles 1 and 2 (OCPP 2.1 A00.FR.2xx): user = station id."""
    if config.password_file is None:
        return {}
    password = config.password_file.read_text(encoding="utf-8").strip()
    token = base64.b64encode(f"{config.station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class OcppClient:
    """Owns the OCPP thread and its loop. Thread-safe entry points: `wake`, `status_changed`,
    `online`, `stop`."""

    def __init__(
        self,
        *,
        config: OcppConfig,
        queue: OcppQueue,
        model: DeviceModel,
        settings: Settings,
        clock: Clock,
        post: Callable[[Event], None],
        snapshot: Callable[[], Kiosk],
        on_reset: Callable[[], None] | None = None,
        backoff_s: tuple[float, float] = BACKOFF_S,
    ) -> None:
        self.config = config
        self.queue = queue
        self.model = model
        self.settings = settings
        self.clock = clock
        self.post = post
        self.snapshot = snapshot
        self.on_reset = on_reset
        self.backoff_s = backoff_s
        self.reset_pending = False
        self.booted = False
        self.sent = 0  # requests answered by the CSMS (for the bench and the console)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._status: str | None = None
        self._status_sent: str | None = None
        self._offline_since_ms: int | None = None  # the kiosk's clock when the link was lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._last_sent = 0.0
        self._link: tuple[Link, asyncio.Task[None]] | None = None  # while online
        self._triggered: set[str] = set()  # TriggerMessage requests not yet carried out
        self.remote_sessions: set[str] = set()  # started by the CSMS, not yet authorized
        # Queues a TransactionEvent `Trigger` for the running transaction (the reporter's).
        self.on_trigger_transaction: Callable[[Kiosk], None] | None = None
        # Queues a SecurityEventNotification (the reporter's): type, techInfo.
        self.on_security_event: Callable[[str, str | None], None] | None = None
        self._failure_reported: str | None = None  # the last connection failure reported
        self.renewal = RenewalSchedule()  # A03: the station's own renewals
        # Security profile 3: the station's certificate, renewable through the CSMS (A02).
        self.certificate: StationCertificate | None = None
        if config.security_profile == 3 and config.cert_file and config.key_file:
            self.certificate = StationCertificate(
                config.station_id, config.cert_file, config.key_file
            )

    # -- thread-safe entry points ------------------------------------------------------------
    def stamp(self) -> Stamp:
        return Stamp(at_ms=self.clock.monotonic_ms(), at=self.clock.now())

    def online(self) -> bool:
        """Connected and accepted by the CSMS: events now are not `offline`."""
        return self._connected.is_set()

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the thread stops
                loop.call_soon_threadsafe(wake.set)

    def trigger(self, message: str) -> None:
        """Send `message` now (TriggerMessage, F06), on the loop's thread: a transaction
        event goes through the durable queue (it carries the transaction's next seqNo), the
        others are sent at once."""
        if message == "TransactionEvent":
            if self.on_trigger_transaction is not None:
                self.on_trigger_transaction(self.snapshot())
            return
        self._triggered.add(message)
        if self._wake is not None:
            self._wake.set()

    def transaction_running(self) -> bool:
        """A transaction of this kiosk started and not yet ended (for TriggerMessage)."""
        session = self.snapshot().session
        if session is None:
            return False
        tx = self.queue.transaction(session.session_id)
        return tx is not None and not tx.ended

    def status_changed(self, status: str) -> None:
        self._status = status
        self.wake()

    def authorize(self, action: RequestAuthorization) -> None:
        """Ask the CSMS about an RFID token (OCPP 2.1 C01 Authorize); the answer is posted as
        `AuthorizationAnswered`: Accepted approves the usual hold as the session's cap, any
        other status declines, and no connection or no answer is `NO_ANSWER` (the machine's
        offline policy decides, with the local list)."""
        if action.session_id in self.remote_sessions:
            # The CSMS started it for this token: no Authorize (AuthCtrlr.AuthorizeRemoteStart
            # is false), the usual hold is the cap.
            self.remote_sessions.discard(action.session_id)
            self._answer(action, AuthOutcome.APPROVED, "")
            return
        loop = self._loop
        if loop is None or not self.online():
            self._answer(action, AuthOutcome.NO_ANSWER, "csms offline")
            return
        asyncio.run_coroutine_threadsafe(self._authorize(action), loop)

    def _answer(self, action: RequestAuthorization, outcome: AuthOutcome, reason: str) -> None:
        approved = outcome is AuthOutcome.APPROVED
        self.post(
            AuthorizationAnswered(
                session_id=action.session_id,
                outcome=outcome,
                amount=action.amount if approved else None,
                reason=reason,
                **self.stamp(),
            )
        )

    async def _authorize(self, action: RequestAuthorization) -> None:
        link = self._link
        if link is None:
            self._answer(action, AuthOutcome.NO_ANSWER, "csms offline")
            return
        token = {"idToken": action.card.token[:255], "type": "Local"}
        try:
            answer = await self._ask(link[0], link[1], "Authorize", {"idToken": token})
        except (ConnectionLost, TimeoutError, CallRefused, OCPPError) as exc:
            log.info("event=ocpp_authorize_failed error=%s", type(exc).__name__)
            self._answer(action, AuthOutcome.NO_ANSWER, "csms no answer")
            return
        status = answer["idTokenInfo"]["status"]
        log.info("event=ocpp_authorized session=%s status=%s", action.session_id, status)
        if status == "Accepted":
            self._answer(action, AuthOutcome.APPROVED, "")
        else:
            self._answer(action, AuthOutcome.DECLINED, f"csms: {status}")

    def start(self) -> None:
        self._resume_web_payment()
        self._thread = threading.Thread(target=self._run, name="ocpp", daemon=True)
        self._thread.start()

    def _resume_web_payment(self) -> None:
        """A web payment the CSMS announced before a restart keeps the charger for the rest
        of its timeout (C25; the daemon has posted `PoweredUp` before this)."""
        until = self.queue.web_payment_until(self.config.evse_id)
        stamp = self.stamp()
        if until is None or until <= stamp["at"]:
            return
        left_ms = int((until - stamp["at"]).total_seconds() * 1000)
        log.info("event=ocpp_web_payment_resumed left_ms=%d", left_ms)
        self.post(WebPaymentStarted(timeout_ms=left_ms, **stamp))

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def wait_online(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("event=ocpp_thread_error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.backoff_s[0]
        url = f"{self.config.url}/{self.config.station_id}"
        while not self._stopping.is_set():
            try:
                async with connect(
                    url,
                    subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
                    additional_headers=basic_auth(self.config),
                    ssl=ssl_context(self.config),
                    proxy=None,
                    open_timeout=10,
                ) as ws:
                    delay = self.backoff_s[0]
                    await self._serve(ws)
            except (OSError, TimeoutError, websockets.WebSocketException, ConnectionLost) as exc:
                log.info("event=ocpp_disconnected error=%s", type(exc).__name__)
                self._security_failure(exc)
            except (CallRefused, OCPPError) as exc:
                # The CSMS refused (or sent an invalid answer to) BootNotification, a status or
                # a heartbeat: start over on a new connection after the back-off.
                log.warning("event=ocpp_refused_connection error=%s", exc)
            finally:
                self._connected.clear()
            if self._stopping.is_set():
                return
            await self._sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])

    def _security_failure(self, exc: BaseException) -> None:
        """A04: a CSMS certificate that does not verify against the pinned CA, or
        credentials the CSMS refuses, is a security event, queued for when a connection
        succeeds; once per kind until one does (the retries are not new events)."""
        event_type = tech_info = None
        if isinstance(exc, ssl.SSLCertVerificationError):
            event_type, tech_info = messages.INVALID_CSMS_CERTIFICATE, str(exc.verify_message)
        elif isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
            event_type = messages.FAILED_TO_AUTHENTICATE
            tech_info = f"HTTP {exc.response.status_code} from {self.config.url}"
        if event_type is None or event_type == self._failure_reported:
            return
        self._failure_reported = event_type
        if self.on_security_event is not None:
            self.on_security_event(event_type, tech_info)

    async def _sleep(self, seconds: float) -> None:
        """Wait, but wake at once for `stop()`."""
        assert self._wake is not None
        end = asyncio.get_running_loop().time() + seconds
        while not self._stopping.is_set():
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=left)
            except TimeoutError:
                return

    async def _ask(
        self, link: Link, reader: asyncio.Task[None], action: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """One request, abandoned if the connection drops first."""
        answer = asyncio.ensure_future(request(link, action, payload))
        await asyncio.wait({answer, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            raise ConnectionLost(action)
        result = answer.result()
        self.sent += 1
        self._last_sent = asyncio.get_running_loop().time()
        return result

    async def _serve(self, ws: ClientConnection) -> None:
        link = Link(self.config.station_id, ws, self)
        reader: asyncio.Task[None] = asyncio.ensure_future(link.start())
        try:
            if not await self._boot(link, reader):
                return
            self._link = (link, reader)
            self._failure_reported = None
            self._connected.set()
            log.info("event=ocpp_online url=%s", self.config.url)
            offline_since, self._offline_since_ms = self._offline_since_ms, None
            if (
                offline_since is not None
                and self.clock.monotonic_ms() - offline_since > self.settings.offline_threshold_ms
            ):
                self._status_sent = None  # B04.FR.01: offline too long, report it unchanged too
            while not self._stopping.is_set() and not reader.done():
                await self._send_status(link, reader)
                await self._drain(link, reader)
                if self.reset_pending and self.snapshot().session is None and self.on_reset:
                    self.reset_pending = False
                    self.queue.note_reset()
                    self.on_reset()
                await self._heartbeat(link, reader)
                await self._meter_values(link, reader)
                self._renewal_due()
                await self._sign_certificate(link, reader)
                await self._idle(reader)
        finally:
            if self._connected.is_set():
                self._offline_since_ms = self.clock.monotonic_ms()
            self._connected.clear()
            self._link = None
            reader.cancel()

    async def _boot(self, link: Link, reader: asyncio.Task[None]) -> bool:
        """BootNotification until Accepted (B01-B03); nothing else is sent before."""
        if self.booted:
            return True
        c = self.config
        payload = {
            "reason": "PowerUp",
            "chargingStation": {
                "model": c.model[:20],
                "vendorName": c.vendor[:50],
                "serialNumber": c.station_id[:25],
                "firmwareVersion": FIRMWARE,
            },
        }
        while not self._stopping.is_set():
            answer = await self._ask(link, reader, "BootNotification", payload)
            interval = int(answer.get("interval", 0))
            if answer["status"] == "Accepted":
                if interval > 0 and ("OCPPCommCtrlr", "HeartbeatInterval") not in (
                    self.queue.variables()
                ):
                    self.settings.heartbeat_interval_ms = interval * 1000
                self.booted = True
                log.info("event=ocpp_booted interval_s=%d", interval)
                return True
            log.warning("event=ocpp_boot_not_accepted status=%s", answer["status"])
            await self._sleep(interval or BOOT_RETRY_S)
        return False

    async def _send_status(self, link: Link, reader: asyncio.Task[None]) -> None:
        """The current status, out of the queue: when the CSMS triggers it (F06), or, with
        QueueAllMessages off, when it changed since the last one sent (G01, B04)."""
        status = self._status
        triggered = "StatusNotification" in self._triggered
        self._triggered.discard("StatusNotification")
        if status is None:
            return
        if not triggered and (self.settings.queue_all_messages or status == self._status_sent):
            return
        payload = messages.status_notification(status, self.clock.now(), self._evse())
        await self._ask(link, reader, "StatusNotification", payload)
        self._status_sent = status

    def _evse(self) -> tuple[int, int]:
        return (self.config.evse_id, self.config.connector_id)

    async def _drain(self, link: Link, reader: asyncio.Task[None]) -> None:
        """Send the durable queue's head until it is empty, one message at a time."""
        while not self._stopping.is_set():
            head = self.queue.head(1)
            if not head:
                return
            message = head[0]
            try:
                answer = await self._ask(link, reader, message.action, message.payload)
            except CallRefused as refusal:
                dropped = self.queue.rejected(message.seq, str(refusal))
                log.warning(
                    "event=ocpp_refused action=%s seq=%d error=%s set_aside=%s",
                    message.action,
                    message.seq,
                    refusal,
                    dropped,
                )
                continue
            except OCPPError as exc:  # the payload or the answer broke the schema: a bug
                dropped = self.queue.rejected(message.seq, f"invalid: {exc}")
                log.error(
                    "event=ocpp_invalid action=%s seq=%d error=%s", message.action, message.seq, exc
                )
                continue
            self.queue.sent(message.seq)
            self._cost_limit(message, answer)
            if message.action == "StatusNotification":
                self._status_sent = message.payload["connectorStatus"]
            await self._send_status(link, reader)

    def _cost_limit(self, message: QueuedMessage, answer: dict[str, Any]) -> None:
        """A TransactionEventResponse's `transactionLimit.maxCost` (the CSMS's limit; for a
        web payment it ran, what its payment service holds): `CostLimitSet` for the machine,
        in the session's currency, rounded down to the minor unit."""
        session = self.snapshot().session
        if message.action != "TransactionEvent" or session is None:
            return
        money = messages.max_cost(answer, session.currency)
        if money is None or session.session_id != message.transaction_id:
            return
        log.info("event=ocpp_cost_limit session=%s limit=%s", session.session_id, money)
        self.post(CostLimitSet(session_id=session.session_id, limit=money, **self.stamp()))

    async def _heartbeat(self, link: Link, reader: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        triggered = "Heartbeat" in self._triggered
        self._triggered.discard("Heartbeat")
        if triggered or loop.time() - self._last_sent >= self.settings.heartbeat_interval_ms / 1000:
            await self._ask(link, reader, "Heartbeat", {})

    async def _meter_values(self, link: Link, reader: asyncio.Task[None]) -> None:
        """A triggered MeterValues (F06): the meter's last register reading, now."""
        if "MeterValues" not in self._triggered:
            return
        self._triggered.discard("MeterValues")
        register = self.snapshot().register_wh
        if register is None:
            return
        payload = messages.meter_values(self.clock.now(), register, self.config.evse_id)
        await self._ask(link, reader, "MeterValues", payload)

    def certificate_installed(self) -> None:
        """A new certificate is in place: its expiry decides the next renewal (A03)."""
        self.renewal.reset()

    def _renewal_due(self) -> None:
        """A03: ask for a new certificate by itself when `RenewalSchedule` says so."""
        if self.certificate is not None and self.renewal.due(
            self.certificate, self.clock.now(), self.config.renew_before_ms, self.settings
        ):
            self._triggered.add(SIGN_CERTIFICATE)

    async def _sign_certificate(self, link: Link, reader: asyncio.Task[None]) -> None:
        """A triggered SignChargingStationCertificate (A02): a new key and its CSR, sent in
        SignCertificate; the CSMS's CA answers later with CertificateSigned."""
        if SIGN_CERTIFICATE not in self._triggered:
            return
        self._triggered.discard(SIGN_CERTIFICATE)
        if self.certificate is None:
            return
        csr = self.certificate.request()
        payload = {"csr": csr, "certificateType": CHARGING_STATION_CERTIFICATE}
        answer = await self._ask(link, reader, "SignCertificate", payload)
        log.info("event=ocpp_certificate_requested status=%s", answer["status"])

    async def _idle(self, reader: asyncio.Task[None]) -> None:
        """Sleep until woken (a new message, a status change, stop), the connection drops,
        or a heartbeat is due."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        due = self._last_sent + self.settings.heartbeat_interval_ms / 1000 - loop.time()
        if self._wake.is_set() or self._triggered:
            self._wake.clear()
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait(
            {waiter, reader}, timeout=max(0.0, min(due, 5.0)), return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        self._wake.clear()
