"""A small reference CSMS (OCPP 2.1) for the demo, `simulate --csms` and the tests.

Built on the `ocpp` package's handler side: every request a station sends and every answer
this CSMS gives is validated against the OCA JSON schemas by the package, and requests this
CSMS sends go through `terminal.ocpp.rpc.request` (validated both ways). It keeps what each
station sent, in order, as the raw wire payloads (and, with `log`, one JSON line each), so a
test can check transaction events for order, duplicates, `offline` flags and `seqNo`.

Security: with `passwords` a station must send HTTP Basic auth (user = its id) and the
password (profiles 1 and 2); with TLS and `client_ca` it must present a certificate from that
CA whose common name is its id (profile 3). A station id must be in `passwords` or, with
`client_ca`, be the certificate's name; anything else is refused at the handshake (401/403).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint, call_result
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from terminal.config import Config, OcppConfig
from terminal.errors import ConfigError
from terminal.ocpp.rpc import SUBPROTOCOL, request, unhandled

log = logging.getLogger("ev_terminal.csms")


@dataclass(frozen=True, slots=True)
class Received:
    """One request a station sent, as it came over the wire."""

    station: str
    action: str
    payload: dict[str, Any]
    at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CsmsPeer(ChargePoint):  # type: ignore[misc]  # the ocpp package is untyped
    """The CSMS's side of one station's connection."""

    def __init__(self, station: str, ws: ServerConnection, csms: ReferenceCsms) -> None:
        super().__init__(station, ws, response_timeout=30)
        self.csms = csms

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Record each request as it came (before the package's validation answers it)."""
        try:
            message = json.loads(raw_msg)
        except ValueError:
            message = None
        if isinstance(message, list) and len(message) == 4 and message[0] == 2:
            self.csms.record(self.id, str(message[2]), message[3])
        refusal = unhandled(self, raw_msg)
        if refusal is not None:
            await self._send(refusal)
            return
        await super().route_message(raw_msg)

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=self.csms.heartbeat_s, status=self.csms.boot_status
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on("TransactionEvent")
    def on_transaction_event(
        self, event_type: str, id_token: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        """A transaction started for a web payment this CSMS ran is limited to what its
        payment service holds (`transactionLimit.maxCost`)."""
        held = self.csms.web_payment_limits.get(str((id_token or {}).get("id_token")))
        if event_type == "Started" and held is not None:
            return call_result.TransactionEvent(transaction_limit={"max_cost": float(held)})
        return call_result.TransactionEvent()

    @on("NotifySettlement")
    def on_settlement(self, **_: Any) -> Any:
        return call_result.NotifySettlement()

    @on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> Any:
        return call_result.SecurityEventNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, **_: Any) -> Any:
        """The station's CSR is recorded; `ask(..., "CertificateSigned", ...)` answers it
        once a CA has signed it (the tests' CA)."""
        return call_result.SignCertificate(status="Accepted")

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return call_result.MeterValues()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        status = "Accepted" if id_token.get("id_token") in self.csms.accepted_tokens else "Invalid"
        return call_result.Authorize(id_token_info={"status": status})


@dataclass
class ReferenceCsms:
    """Runs on its own thread and loop; `start`, `stop`, and `down`/`up` to simulate an
    outage (connections dropped, new ones refused) without losing what was received."""

    host: str = "127.0.0.1"
    port: int = 0
    passwords: dict[str, str] | None = field(default_factory=dict)  # None: no auth (demo)
    ssl_context: ssl.SSLContext | None = None
    client_ca: bool = False  # TLS with client certificates (profile 3)
    heartbeat_s: int = 300
    boot_status: str = "Accepted"
    accepted_tokens: set[str] = field(default_factory=set)
    log_path: Path | None = None
    received: list[Received] = field(default_factory=list)
    on_received: Callable[[Received], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._peers: dict[str, CsmsPeer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: OSError | None = None  # why the server could not listen
        self.certificates: dict[str, bytes] = {}  # station -> its client certificate (DER)
        self._remote_start_id = 0  # numbers this CSMS's RequestStartTransaction
        self.web_payment_limits: dict[str, Decimal] = {}  # payment reference -> held

    # -- what was received -------------------------------------------------------------------
    def record(self, station: str, action: str, payload: dict[str, Any]) -> None:
        item = Received(station=station, action=action, payload=payload, at=_now())
        with self._lock:
            self.received.append(item)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"station": station, "action": action, "payload": payload}))
                f.write("\n")
        if self.on_received is not None:
            self.on_received(item)

    def messages(self, action: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if action is None or r.action == action]

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = "localhost" if self.ssl_context is not None else self.host
        return f"{scheme}://{host}:{self.port}/ocpp"

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> ReferenceCsms:
        self._thread = threading.Thread(target=self._run, name="csms", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the CSMS did not start")
        if self._failed is not None:
            raise self._failed  # in the caller's thread: a port in use is the operator's to fix
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except OSError as exc:
            self._failed = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        # Connections still closing when stopped: let them finish (their sockets close)
        # rather than be destroyed pending with the loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    async def _listen(self) -> None:
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
            ssl=self.ssl_context,
            process_request=self._authenticate,
        )
        sockets = list(self._server.sockets)
        self.port = sockets[0].getsockname()[1]

    def _run_here(self, coro: Any, timeout: float = 30) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def down(self) -> None:
        """Stop listening and drop every station's connection."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        self._run_here(close())

    def up(self) -> None:
        """Listen again on the same port."""
        self._run_here(self._listen())

    def stop(self) -> None:
        """Stop for good (a second call does nothing)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self.down()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    # -- connections -------------------------------------------------------------------------
    def _authenticate(self, connection: ServerConnection, req: Request) -> Response | None:
        station = req.path.rstrip("/").rsplit("/", 1)[-1]
        if self.client_ca:
            cert = connection.transport.get_extra_info("peercert") or {}
            names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
            if station not in names:
                return connection.respond(HTTPStatus.FORBIDDEN, "certificate is not the station\n")
            der = connection.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            self.certificates[station] = der  # the certificate of its latest connection
            return None
        if self.passwords is None:
            return None
        expected = self.passwords.get(station)
        header = req.headers.get("Authorization", "")
        if expected is None or not header.startswith("Basic "):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "basic auth required\n")
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "malformed basic auth\n")
        if user != station or password != expected:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong station or password\n")
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "ocpp2.1 required")
            return
        assert ws.request is not None
        station = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        peer = CsmsPeer(station, ws, self)
        self._peers[station] = peer
        log.info("event=csms_connected station=%s", station)
        try:
            await peer.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._peers.get(station) is peer:
                del self._peers[station]

    def connected(self, station: str) -> bool:
        return station in self._peers

    def ask_unchecked(self, station: str, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL without validating it (to see how a station answers what no OCPP 2.1
        CSMS would send); the raw answer frame."""
        peer = self._peers[station]

        async def call() -> list[Any]:
            unique_id = str(peer._unique_id_generator())
            async with peer._call_lock:
                await peer._send(json.dumps([2, unique_id, action, payload]))
                answer = await peer._get_specific_response(unique_id, peer._response_timeout)
            frame: list[Any] = json.loads(answer.to_json())
            return frame

        frame: list[Any] = self._run_here(call())
        return frame

    def ask(self, station: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a request to a connected station (from any thread); its answer."""
        peer = self._peers[station]
        answer: dict[str, Any] = self._run_here(request(peer, action, payload))
        return answer

    # -- a web payment this CSMS runs (OCPP 2.1 C25) -----------------------------------------
    def web_payment_opened(self, station: str, *, evse_id: int = 1, timeout_s: int = 120) -> None:
        """A driver scanned the station's QR code and opened this CSMS's payment page for
        `evse_id`: the station is told to keep the charger for `timeout_s` seconds while the
        driver pays (NotifyWebPaymentStarted)."""
        self.ask(station, "NotifyWebPaymentStarted", {"evseId": evse_id, "timeout": timeout_s})

    def web_payment_paid(
        self, station: str, reference: str, *, evse_id: int = 1, held: Decimal | None = None
    ) -> dict[str, Any]:
        """The payment service approved the driver's payment (`reference`, its payment id)
        and holds `held` (major units): the station starts the transaction for it
        (RequestStartTransaction with a `DirectPayment` idToken) and is told the amount as the
        transaction's cost limit when it reports the start; its answer, Accepted with the
        transaction id or Rejected."""
        if held is not None:
            self.web_payment_limits[reference] = held
        with self._lock:
            self._remote_start_id += 1
            remote_start_id = self._remote_start_id
        return self.ask(
            station,
            "RequestStartTransaction",
            {
                "idToken": {"idToken": reference, "type": "DirectPayment"},
                "remoteStartId": remote_start_id,
                "evseId": evse_id,
            },
        )


def joined(config: Config, url: str) -> Config:
    """`simulate --csms URL`: the config's [ocpp] with this URL, or, without the section, a
    ws:// connection with no credentials (the reference CSMS started without a password)."""
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError("--csms", "must be a ws:// or wss:// URL")
    if config.ocpp is not None:
        return replace(config, ocpp=replace(config.ocpp, url=url.rstrip("/")))
    if not url.startswith("ws://"):
        raise ConfigError("--csms", "a wss:// CSMS needs the [ocpp] section (its CA)")
    return replace(config, ocpp=OcppConfig(url=url.rstrip("/"), station_id=config.station.id))


def main(
    *,
    host: str,
    port: int,
    password_file: Path | None,
    station: str | None,
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
    log_path: Path | None,
) -> int:
    """`ev-terminal csms`: run until interrupted, printing one line per request received."""
    for name in ("ocpp", "websockets"):  # they log every frame at INFO; the lines below say it
        logging.getLogger(name).setLevel(logging.WARNING)
    context = None
    if cert is not None and key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(client_ca))
    passwords: dict[str, str] | None = None  # without a password file: no auth (a demo)
    if password_file is not None:
        if station is None:
            raise SystemExit("csms: --password-file needs --station")
        passwords = {station: password_file.read_text(encoding="utf-8").strip()}
    csms = ReferenceCsms(
        host=host,
        port=port,
        passwords=passwords,
        ssl_context=context,
        client_ca=client_ca is not None,
        log_path=log_path,
        on_received=lambda r: print(f"{r.at} {r.station} {r.action} {json.dumps(r.payload)}"),  # noqa: T201 - the CLI prints what it receives
    ).start()
    print(f"csms listening on {csms.url}/<station id>", flush=True)  # noqa: T201 - CLI output
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        csms.stop()
    return 0
