"""The kiosk's OCPP device model: the components and variables the CSMS may read and set.

Names follow OCPP 2.1 Part 2, appendix "Standardized components and variables" where the kiosk
has the concept (`OCPPCommCtrlr.HeartbeatInterval`, `SampledDataCtrlr.TxUpdatedInterval`,
`TxCtrlr.TxStartPoint`, `AuthCtrlr.LocalAuthorizeOffline`, `TariffCostCtrlr.Currency` ...).
`PaymentCtrlr` holds the payment terminal's settings (hold, increments) under names of the
kiosk's own beside `Enabled`/`Available`. What the CSMS may change is only what the kiosk can
apply at once without a restart (the intervals, whether status changes are queued while
offline); everything else is read-only here
because it comes from the kiosk's config file, which the operator owns. Values set by the
CSMS are kept in the journal and survive a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from terminal.config import Config
from terminal.money import Money
from terminal.ocpp.queue import OcppQueue
from terminal.ocpp.reporter import Settings

ACCEPTED = "Accepted"
REJECTED = "Rejected"
UNKNOWN_COMPONENT = "UnknownComponent"
UNKNOWN_VARIABLE = "UnknownVariable"
NOT_SUPPORTED = "NotSupportedAttributeType"


@dataclass(frozen=True, slots=True)
class Variable:
    read: Callable[[], str]
    write: Callable[[str], None] | None = None  # None: read-only
    kind: str = "seconds"  # what a written value must be: "seconds" (1-86400) or "boolean"


def _valid(kind: str, value: str) -> bool:
    if kind == "boolean":
        return value in ("true", "false")  # OCPP 2.1 Part 2 dataType boolean
    return value.isdigit() and 1 <= int(value) <= 86_400


def _seconds(ms: int) -> str:
    return str(ms // 1000)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class DeviceModel:
    def __init__(self, config: Config, settings: Settings, queue: OcppQueue) -> None:
        self.settings = settings
        self.queue = queue
        p, s, o = config.payment, config.session, config.offline

        def amount(minor: int) -> str:
            return f"{Money(minor, p.currency).to_decimal():f}"

        self.variables: dict[tuple[str, str, str | None], Variable] = {
            ("OCPPCommCtrlr", "HeartbeatInterval", None): Variable(
                lambda: _seconds(settings.heartbeat_interval_ms),
                lambda v: setattr(settings, "heartbeat_interval_ms", int(v) * 1000),
            ),
            ("OCPPCommCtrlr", "QueueAllMessages", None): Variable(
                lambda: _bool(settings.queue_all_messages),
                lambda v: setattr(settings, "queue_all_messages", v == "true"),
                kind="boolean",
            ),
            ("OCPPCommCtrlr", "OfflineThreshold", None): Variable(
                lambda: _seconds(settings.offline_threshold_ms),
                lambda v: setattr(settings, "offline_threshold_ms", int(v) * 1000),
            ),
            ("SampledDataCtrlr", "TxUpdatedInterval", None): Variable(
                lambda: _seconds(settings.tx_updated_interval_ms),
                lambda v: setattr(settings, "tx_updated_interval_ms", int(v) * 1000),
            ),
            ("SampledDataCtrlr", "TxUpdatedMeasurands", None): Variable(
                lambda: "Energy.Active.Import.Register,Power.Active.Import"
            ),
            ("TxCtrlr", "TxStartPoint", None): Variable(lambda: "Authorized"),
            ("TxCtrlr", "TxStopPoint", None): Variable(lambda: "Authorized,EVConnected"),
            ("TxCtrlr", "EVConnectionTimeOut", None): Variable(
                lambda: _seconds(s.plug_in_timeout_ms)
            ),
            ("TxCtrlr", "StopTxOnEVSideDisconnect", None): Variable(lambda: "true"),
            ("AuthCtrlr", "Enabled", None): Variable(lambda: "true"),
            ("AuthCtrlr", "AuthorizeRemoteStart", None): Variable(lambda: "false"),
            ("AuthCtrlr", "LocalAuthorizeOffline", None): Variable(lambda: _bool(o.local_list)),
            ("AuthCtrlr", "LocalPreAuthorize", None): Variable(lambda: "false"),
            ("TariffCostCtrlr", "Enabled", "Tariff"): Variable(lambda: "true"),
            ("TariffCostCtrlr", "Enabled", "Cost"): Variable(lambda: "true"),
            ("TariffCostCtrlr", "Currency", None): Variable(lambda: p.currency),
            ("TariffCostCtrlr", "TariffFallbackMessage", None): Variable(
                lambda: config.tariff.name
            ),
            ("SecurityCtrlr", "SecurityProfile", None): Variable(
                lambda: str(config.ocpp.security_profile if config.ocpp else 1)
            ),
            ("SecurityCtrlr", "CertSigningWaitMinimum", None): Variable(
                lambda: _seconds(settings.cert_signing_wait_minimum_ms),
                lambda v: setattr(settings, "cert_signing_wait_minimum_ms", int(v) * 1000),
            ),
            ("SecurityCtrlr", "CertSigningRepeatTimes", None): Variable(
                lambda: str(settings.cert_signing_repeat_times)
            ),
            ("PaymentCtrlr", "Enabled", None): Variable(lambda: "true"),
            ("PaymentCtrlr", "Available", None): Variable(lambda: "true"),
            ("PaymentCtrlr", "AuthorizationAmount", None): Variable(lambda: amount(p.hold)),
            ("PaymentCtrlr", "IncrementalAuthorization", None): Variable(
                lambda: _bool(p.increment > 0)
            ),
            ("PaymentCtrlr", "MaxAuthorizationAmount", None): Variable(lambda: amount(p.ceiling)),
        }
        for (component, variable), value in queue.variables().items():
            entry = self.variables.get((component, variable, None))
            if entry is not None and entry.write is not None:
                entry.write(value)

    def _find(
        self, component: str, variable: str, instance: str | None
    ) -> tuple[str, Variable | None]:
        if not any(key[0] == component for key in self.variables):
            return UNKNOWN_COMPONENT, None
        entry = self.variables.get((component, variable, instance))
        return (ACCEPTED, entry) if entry is not None else (UNKNOWN_VARIABLE, None)

    def get(
        self, component: str, variable: str, instance: str | None = None, attribute: str = "Actual"
    ) -> tuple[str, str | None]:
        status, entry = self._find(component, variable, instance)
        if entry is None:
            return status, None
        if attribute != "Actual":
            return NOT_SUPPORTED, None
        return ACCEPTED, entry.read()

    def set(
        self,
        component: str,
        variable: str,
        value: str,
        instance: str | None = None,
        attribute: str = "Actual",
    ) -> str:
        """Set a writable variable: an interval in whole seconds (1 to 86400) or a boolean."""
        status, entry = self._find(component, variable, instance)
        if entry is None:
            return status
        if attribute != "Actual":
            return NOT_SUPPORTED
        if entry.write is None:
            return REJECTED
        if not _valid(entry.kind, value):
            return REJECTED
        entry.write(value)
        self.queue.set_variable(component, variable, value)
        return ACCEPTED
