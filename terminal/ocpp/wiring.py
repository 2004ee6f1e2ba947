"""Builds the OCPP side of a kiosk from its `[ocpp]` section and attaches it to the daemon."""

from __future__ import annotations

from collections.abc import Callable

from hardware.clock import Clock
from terminal.config import Config
from terminal.ocpp.client import OcppClient
from terminal.ocpp.device_model import DeviceModel
from terminal.ocpp.queue import OcppQueue
from terminal.ocpp.reporter import Reporter, Settings
from terminal.shell.daemon import Daemon


def attach_ocpp(
    daemon: Daemon,
    config: Config,
    clock: Clock,
    *,
    on_reset: Callable[[], None] | None = None,
    backoff_s: tuple[float, float] | None = None,
) -> OcppClient:
    """The reporter and client for `config.ocpp` (which must be set), attached to `daemon`;
    the client's thread starts with `Daemon.run` (or `OcppClient.start`)."""
    oc = config.ocpp
    assert oc is not None
    queue = OcppQueue(daemon.journal)
    settings = Settings(
        tx_updated_interval_ms=oc.tx_updated_interval_ms,
        heartbeat_interval_ms=oc.heartbeat_interval_ms,
    )
    model = DeviceModel(config, settings, queue)
    client = OcppClient(
        config=oc,
        queue=queue,
        model=model,
        settings=settings,
        clock=clock,
        post=daemon.post,
        snapshot=lambda: daemon.kiosk,
        on_reset=on_reset,
        **({"backoff_s": backoff_s} if backoff_s is not None else {}),
    )
    reporter = Reporter(
        queue=queue,
        clock=clock,
        evse=(oc.evse_id, oc.connector_id),
        receipt_url=config.gateway.receipt_url,
        settings=settings,
        online=client.online,
        on_status=client.status_changed,
        wake=client.wake,
        authorize=client.authorize if oc.authorize_id_tokens else None,
        start_paid=client.authorize,
    )
    client.on_trigger_transaction = reporter.triggered
    client.on_security_event = reporter.security_event
    daemon.attach_ocpp(reporter, client)
    return client
