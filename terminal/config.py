"""Configuration: one TOML file parsed into frozen dataclasses.

Unknown keys and invalid values are errors that name the key (`ConfigError`); the CLI turns
them into exit code 2. Secrets are never config values: keys live in files named here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from terminal.core.words import LANGUAGES
from terminal.errors import ConfigError
from terminal.money import MINOR_UNITS
from terminal.tariff import OcpiTariff

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True, kw_only=True)
class StationConfig:
    id: str
    name: str
    timezone: str = "UTC"
    language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentConfig:
    currency: str
    hold: int  # minor units
    min_authorized: int  # minor units; a smaller partial approval is refused
    increment: int = 0  # minor units; top the hold up by this much (0: never)
    pay_by_phone: bool = False  # show a one-time QR code to pay on the phone (gateway's page)
    ceiling: int = 0  # minor units; the most one session holds, increments included


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffConfig:
    """[tariff]: the simple form (`per_kwh`, `session_fee`, `vat_percent`) or an OCPI 2.2.1
    tariff file (`ocpi_file`), never both. `name` is shown on receipts; with a file it
    defaults to the tariff's `id`."""

    name: str
    per_kwh: Decimal = Decimal(0)  # excl. VAT
    session_fee: Decimal = Decimal(0)
    vat_percent: Decimal = Decimal(0)
    ocpi_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    authorization_timeout_ms: int = 20_000
    plug_in_timeout_ms: int = 120_000
    suspended_timeout_ms: int = 30 * 60_000
    receipt_ms: int = 60_000
    notice_ms: int = 5_000
    sample_interval_ms: int = 1_000
    contactor_check_ms: int = 100
    max_current_a: int = 16
    pilot_release_ms: int = 6_000
    taper_at_percent: int = 90
    taper_current_a: int = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    url: str
    receipt_url: str
    timeout_ms: int = 10_000
    embedded: bool = False
    # Mutual TLS (https URLs): the CA pinned for the gateway's certificate, and this terminal's
    # client certificate and key (PEM files; the key readable by its owner only).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareConfig:
    backend: str = "sim"  # "sim" or "pi"
    settings: tuple[tuple[str, Any], ...] = ()  # driver settings, validated by the wiring


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineConfig:
    """[offline]: what may start when the gateway does not answer (README, "Offline policy")."""

    local_list: bool = True  # ID tokens on the local authorization list start offline
    list_file: Path | None = None  # the lists from a file instead of the gateway
    sync_interval_ms: int = 15 * 60_000  # how often the lists are fetched from the gateway
    store_and_forward: bool = False  # payment cards start offline within the caps
    max_session: int = 0  # minor units: one offline payment session's cap
    max_outstanding: int = 0  # minor units: all unanswered offline payment sessions
    max_count: int = 0  # how many may be unanswered at once
    max_age_ms: int = 0  # how old the oldest unanswered one may be


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    """[console]: the technician's serial diagnostics console (off without a port)."""

    port: str | None = None  # e.g. /dev/ttyAMA0 (Pi UART) or /dev/ttyGS0 (USB gadget)
    baud: int = 115_200
    idle_timeout_ms: int = 5 * 60_000
    lockout_attempts: int = 5
    lockout_ms: int = 15 * 60_000
    reader_window_ms: int = 15_000
    pin_file: Path | None = None  # default: technician-pin in the key dir (else the data dir)


@dataclass(frozen=True, slots=True, kw_only=True)
class OcppConfig:
    """[ocpp]: the kiosk as an OCPP 2.1 charging station of the operator's CSMS (off without
    the section). `security_profile` is OCPP 2.1's (A00.FR.2xx): 1 basic auth over ws://,
    2 basic auth over wss:// (the CSMS's certificate chains to `ca_file`), 3 a client
    certificate over wss:// (`cert_file`/`key_file`). The basic-auth password lives in
    `password_file`, never in the config."""

    url: str  # ws[s]://host:port/path; the station identity is appended (OCPP-J 3.1)
    station_id: str
    security_profile: int = 1
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    evse_id: int = 1
    connector_id: int = 1
    heartbeat_interval_ms: int = 5 * 60_000  # until the CSMS's BootNotification answer
    tx_updated_interval_ms: int = 60_000  # SampledDataCtrlr.TxUpdatedInterval
    response_timeout_ms: int = 30_000
    model: str = "ev-terminal"
    vendor: str = "ev-terminal"
    # The CSMS is the authority for RFID tokens (OCPP Authorize) and bills their sessions
    # itself: no hold or capture at the gateway for them. Bank cards always go to the gateway.
    authorize_id_tokens: bool = False
    # Security profile 3: ask the CSMS for a new client certificate this long before the
    # current one expires (OCPP 2.1 A03); the files must be writable (/var/lib/ev-terminal).
    renew_before_ms: int = 30 * 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    station: StationConfig
    payment: PaymentConfig
    tariff: TariffConfig
    session: SessionConfig
    gateway: GatewayConfig
    hardware: HardwareConfig
    data_dir: Path
    keys_dir: Path | None
    console: ConsoleConfig = ConsoleConfig()
    offline: OfflineConfig = OfflineConfig()
    ocpp: OcppConfig | None = None
    source: Path | None = None

    @property
    def pin_file(self) -> Path:
        """Where the technician PIN's hash lives."""
        if self.console.pin_file is not None:
            return self.console.pin_file
        return (self.keys_dir or self.data_dir) / "technician-pin"


class _Section:
    """Reads one table, remembering which keys were used so the rest can be refused."""

    def __init__(self, data: dict[str, Any], name: str, *, required: bool = True) -> None:
        raw = data.get(name)
        if raw is None and required:
            raise ConfigError(name, "missing section")
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(name, "must be a table")
        self.name = name
        self.raw: dict[str, Any] = raw or {}
        self.used: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str, kind: type, default: Any = ..., *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is ... or required:
                raise ConfigError(self.key(key), "missing")
            return default
        value = self.raw[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(self.key(key), "must be true or false")
        elif kind is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(self.key(key), "must be an integer")
        elif not isinstance(value, kind):
            raise ConfigError(self.key(key), f"must be a {kind.__name__}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default)
        if isinstance(value, str) and not value.strip():
            raise ConfigError(self.key(key), "must not be empty")
        return str(value)

    def decimal(self, key: str, default: Any = ...) -> Decimal:
        self.used.add(key)
        if key not in self.raw:
            if default is ...:
                raise ConfigError(self.key(key), "missing")
            return Decimal(default)
        value = self.raw[key]
        if not isinstance(value, str):
            # Floats are refused: a price is written as a string so it is exact.
            raise ConfigError(self.key(key), 'must be a decimal string such as "0.39"')
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ConfigError(self.key(key), f"not a decimal number: {value!r}") from None
        if not number.is_finite() or number < 0:
            raise ConfigError(self.key(key), "must be a finite number >= 0")
        return number

    def duration_ms(self, key: str, default_ms: int) -> int:
        self.used.add(key)
        if key not in self.raw:
            return default_ms
        value = self.raw[key]
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(self.key(key), 'must be a duration such as "500ms", "20s", "2m"')
        ms = int(match.group(1)) * _UNITS_MS[match.group(2)]
        if ms <= 0:
            raise ConfigError(self.key(key), "must be positive")
        return ms

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _tls_file(section: _Section, key: str, base: Path) -> Path | None:
    """A PEM file named by the config: it must exist; a private key must not be readable by
    group or others."""
    name = section.get(key, str, None)
    if name is None:
        return None
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        mode = path.stat().st_mode
    except OSError:
        raise ConfigError(section.key(key), f"cannot read {path}") from None
    if key == "key_file" and mode & 0o077:
        raise ConfigError(section.key(key), f"{path} is readable by others; chmod 600 it")
    return path


def _offline(o: _Section, base: Path, payment: PaymentConfig) -> OfflineConfig:
    list_file = o.get("list_file", str, None)
    saf = o.get("store_and_forward", bool, False)
    caps = {
        name: o.get(name, int, 0, required=saf)
        for name in ("max_session", "max_outstanding", "max_count")
    }
    for name, value in caps.items():
        if saf and value <= 0:
            raise ConfigError(o.key(name), "must be positive")
    if saf and not payment.min_authorized <= caps["max_session"] <= payment.hold:
        raise ConfigError(
            o.key("max_session"), "must be between payment.min_authorized and payment.hold"
        )
    if saf and caps["max_outstanding"] < caps["max_session"]:
        raise ConfigError(o.key("max_outstanding"), "must be at least max_session")
    if saf and "max_age" not in o.raw:
        raise ConfigError(o.key("max_age"), "missing (required with store_and_forward)")
    config = OfflineConfig(
        local_list=o.get("local_list", bool, True),
        list_file=(base / list_file) if list_file else None,
        sync_interval_ms=o.duration_ms("sync_interval", 15 * 60_000),
        store_and_forward=saf,
        max_age_ms=o.duration_ms("max_age", 0),
        **caps,
    )
    o.finish()
    return config


def _ocpp(o: _Section, base: Path, station: StationConfig) -> OcppConfig:
    """[ocpp], checked whole: the URL scheme must fit the security profile, and each profile
    names exactly the files it uses."""
    url = o.text("url")
    profile = o.get("security_profile", int, 1)
    if profile not in (1, 2, 3):
        raise ConfigError(o.key("security_profile"), "must be 1, 2 or 3 (OCPP 2.1 security)")
    scheme = "ws://" if profile == 1 else "wss://"
    if not url.startswith(scheme) or not re.match(r"^wss?://[^\s/]+", url):
        raise ConfigError(o.key("url"), f"must be a {scheme} URL for security profile {profile}")
    files = {name: _tls_file(o, name, base) for name in ("ca_file", "cert_file", "key_file")}
    password = _tls_file(o, "password_file", base)
    if profile in (1, 2) and password is None:
        raise ConfigError(o.key("password_file"), f"required for security profile {profile}")
    if profile == 3 and password is not None:
        raise ConfigError(o.key("password_file"), "not used with security profile 3")
    if password is not None and password.stat().st_mode & 0o077:
        raise ConfigError(o.key("password_file"), f"{password} is readable by others")
    if profile == 1:
        for name, path in files.items():
            if path is not None:
                raise ConfigError(o.key(name), "only with security profile 2 or 3 (wss://)")
    elif files["ca_file"] is None:
        raise ConfigError(o.key("ca_file"), "required for wss:// (the CSMS's CA)")
    if profile == 3:
        for name in ("cert_file", "key_file"):
            if files[name] is None:
                raise ConfigError(o.key(name), "required for security profile 3")
    elif files["cert_file"] is not None or files["key_file"] is not None:
        name = "cert_file" if files["cert_file"] is not None else "key_file"
        raise ConfigError(o.key(name), "only with security profile 3")
    if profile != 3 and "renew_before" in o.raw:
        raise ConfigError(o.key("renew_before"), "only with security profile 3")
    renew_before_ms = o.duration_ms("renew_before", 30 * 86_400_000)
    station_id = o.text("station_id", station.id)
    if not re.match(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$", station_id):
        # OCPP-J 3.1: the identity is part of the URL; 48 characters of identifierString.
        raise ConfigError(o.key("station_id"), "must be 1-48 characters of A-Z a-z 0-9 *-_=:+|@.")
    evse_id = o.get("evse_id", int, 1)
    connector_id = o.get("connector_id", int, 1)
    for name, value in (("evse_id", evse_id), ("connector_id", connector_id)):
        if value < 1:
            raise ConfigError(o.key(name), "must be 1 or more")
    config = OcppConfig(
        url=url.rstrip("/"),
        station_id=station_id,
        security_profile=profile,
        password_file=password,
        evse_id=evse_id,
        connector_id=connector_id,
        heartbeat_interval_ms=o.duration_ms("heartbeat_interval", 5 * 60_000),
        tx_updated_interval_ms=o.duration_ms("tx_updated_interval", 60_000),
        response_timeout_ms=o.duration_ms("response_timeout", 30_000),
        model=o.text("model", "ev-terminal"),
        vendor=o.text("vendor", "ev-terminal"),
        authorize_id_tokens=o.get("authorize_id_tokens", bool, False),
        renew_before_ms=renew_before_ms,
        **files,
    )
    o.finish()
    return config


def load(path: Path) -> Config:
    """Read and validate a config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    return parse(data, base=path.parent, source=path)


_SIMPLE_TARIFF_KEYS = ("per_kwh", "session_fee", "vat_percent")


def _tariff(
    data: dict[str, Any], base: Path, station: StationConfig, currency: str
) -> TariffConfig:
    """[tariff] in one of its two forms; an OCPI file is read and checked here, so a bad one
    is a config error naming `tariff.ocpi_file`."""
    t = _Section(data, "tariff")
    ocpi: str | None = t.get("ocpi_file", str, None)
    if ocpi is None:
        vat = t.decimal("vat_percent", "0")
        if vat > 100:
            raise ConfigError(t.key("vat_percent"), "must be at most 100")
        tariff = TariffConfig(
            name=t.text("name"),
            per_kwh=t.decimal("per_kwh"),
            session_fee=t.decimal("session_fee", "0"),
            vat_percent=vat,
        )
        t.finish()
        return tariff
    for key in _SIMPLE_TARIFF_KEYS:
        if key in t.raw:
            raise ConfigError(
                t.key(key), "not used with tariff.ocpi_file: give one form or the other"
            )
        t.used.add(key)
    path = base / ocpi
    try:
        document = OcpiTariff.from_json(path.read_bytes(), tz=ZoneInfo(station.timezone))
    except OSError as exc:
        raise ConfigError(t.key("ocpi_file"), f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # TariffError names the field
        raise ConfigError(t.key("ocpi_file"), f"{path.name}: {exc}") from None
    if document.currency != currency:
        raise ConfigError(
            t.key("ocpi_file"),
            f"the tariff's currency {document.currency} is not payment.currency {currency}",
        )
    tariff = TariffConfig(name=t.text("name", document.name), ocpi_file=path)
    t.finish()
    return tariff


def parse(data: dict[str, Any], *, base: Path, source: Path | None = None) -> Config:
    known = {
        "station",
        "payment",
        "tariff",
        "session",
        "gateway",
        "hardware",
        "data",
        "console",
        "offline",
        "ocpp",
    }
    for name in data:
        if name not in known:
            raise ConfigError(name, "unknown section")

    s = _Section(data, "station")
    tz = s.text("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(s.key("timezone"), f"unknown time zone {tz!r}") from None
    language = s.text("language", "en")
    if language not in LANGUAGES:
        raise ConfigError(s.key("language"), f"must be one of: {', '.join(LANGUAGES)}")
    station = StationConfig(id=s.text("id"), name=s.text("name"), timezone=tz, language=language)
    s.finish()

    p = _Section(data, "payment")
    currency = p.text("currency")
    if currency not in MINOR_UNITS:
        raise ConfigError(p.key("currency"), f"unknown ISO 4217 currency {currency!r}")
    hold = p.get("hold", int)
    if hold <= 0:
        raise ConfigError(p.key("hold"), "must be a positive amount in minor units")
    min_authorized = p.get("min_authorized", int, 1)
    if not 0 < min_authorized <= hold:
        raise ConfigError(p.key("min_authorized"), "must be between 1 and payment.hold")
    increment = p.get("increment", int, 0)
    if increment < 0:
        raise ConfigError(p.key("increment"), "must be 0 (no increments) or a positive amount")
    ceiling = p.get("ceiling", int, hold)
    if increment and ceiling <= hold:
        raise ConfigError(p.key("ceiling"), "must be above payment.hold when increments are on")
    if ceiling < hold:
        raise ConfigError(p.key("ceiling"), "must be at least payment.hold")
    payment = PaymentConfig(
        currency=currency,
        hold=hold,
        min_authorized=min_authorized,
        increment=increment,
        ceiling=ceiling,
        pay_by_phone=p.get("pay_by_phone", bool, False),
    )
    p.finish()

    tariff = _tariff(data, base, station, currency)

    se = _Section(data, "session", required=False)
    session = SessionConfig(
        authorization_timeout_ms=se.duration_ms("authorization_timeout", 20_000),
        plug_in_timeout_ms=se.duration_ms("plug_in_timeout", 120_000),
        suspended_timeout_ms=se.duration_ms("suspended_timeout", 30 * 60_000),
        receipt_ms=se.duration_ms("receipt_time", 60_000),
        notice_ms=se.duration_ms("notice_time", 5_000),
        sample_interval_ms=se.duration_ms("sample_interval", 1_000),
        contactor_check_ms=se.duration_ms("contactor_check", 100),
        max_current_a=se.get("max_current", int, 16),
        pilot_release_ms=se.duration_ms("pilot_release", 6_000),
        taper_at_percent=se.get("taper_at", int, 90),
        taper_current_a=se.get("taper_current", int, 6),
    )
    # IEC 61851-1 Annex A: the pilot's duty cycle encodes 6 A to 80 A.
    if isinstance(session.max_current_a, bool) or not 6 <= session.max_current_a <= 80:
        raise ConfigError(se.key("max_current"), "must be 6 to 80 (amperes)")
    if not 1_000 <= session.pilot_release_ms <= 30_000:
        raise ConfigError(se.key("pilot_release"), "must be 1s to 30s")
    if isinstance(session.taper_at_percent, bool) or not (
        session.taper_at_percent == 0 or 50 <= session.taper_at_percent <= 99
    ):
        raise ConfigError(se.key("taper_at"), "must be 0 (never) or 50 to 99 (percent)")
    if isinstance(session.taper_current_a, bool) or not (
        6 <= session.taper_current_a <= session.max_current_a
    ):
        raise ConfigError(se.key("taper_current"), "must be 6 to max_current (amperes)")
    se.finish()

    g = _Section(data, "gateway")
    url = g.text("url")
    if not re.match(r"^https?://[^\s/]+", url):
        raise ConfigError(g.key("url"), "must be an http(s) URL")
    tls = {name: _tls_file(g, name, base) for name in ("ca_file", "cert_file", "key_file")}
    if url.startswith("https:") and tls["ca_file"] is None:
        raise ConfigError(g.key("ca_file"), "required for an https URL (the gateway's CA)")
    if not url.startswith("https:"):
        for name, path in tls.items():
            if path is not None:
                raise ConfigError(g.key(name), "only with an https URL")
    if (tls["cert_file"] is None) != (tls["key_file"] is None):
        missing = "key_file" if tls["key_file"] is None else "cert_file"
        raise ConfigError(g.key(missing), "cert_file and key_file go together")
    gateway = GatewayConfig(
        url=url.rstrip("/"),
        receipt_url=g.text("receipt_url", url.rstrip("/") + "/receipts"),
        timeout_ms=g.duration_ms("timeout", 10_000),
        embedded=g.get("embedded", bool, False),
        **tls,
    )
    g.finish()

    h = _Section(data, "hardware", required=False)
    backend = h.text("backend", "sim")
    if backend not in ("sim", "pi"):
        raise ConfigError(h.key("backend"), "must be one of: sim, pi")
    settings = tuple(sorted((k, v) for k, v in h.raw.items() if k != "backend"))
    hardware = HardwareConfig(backend=backend, settings=settings)
    if backend == "sim" and settings:
        raise ConfigError(h.key(settings[0][0]), "unknown key for the sim backend")
    if backend == "pi":
        # The driver keys are read and checked where the drivers are built (names and values).
        from terminal.wiring import pi_settings  # noqa: PLC0415 - wiring imports this module

        pi_settings(hardware)

    c = _Section(data, "console", required=False)
    port = c.get("port", str, None)
    if port is not None and not Path(port).is_absolute():
        raise ConfigError(c.key("port"), "must be an absolute device path such as /dev/ttyAMA0")
    baud = c.get("baud", int, 115_200)
    if baud not in (9600, 19_200, 38_400, 57_600, 115_200, 230_400):
        raise ConfigError(c.key("baud"), "must be a standard rate: 9600 ... 230400")
    attempts = c.get("lockout_attempts", int, 5)
    if not 1 <= attempts <= 20:
        raise ConfigError(c.key("lockout_attempts"), "must be between 1 and 20")
    pin_file = c.get("pin_file", str, None)
    console = ConsoleConfig(
        port=port or None,
        baud=baud,
        idle_timeout_ms=c.duration_ms("idle_timeout", 5 * 60_000),
        lockout_attempts=attempts,
        lockout_ms=c.duration_ms("lockout_time", 15 * 60_000),
        reader_window_ms=c.duration_ms("reader_window", 15_000),
        pin_file=(base / pin_file) if pin_file else None,
    )
    c.finish()

    offline = _offline(_Section(data, "offline", required=False), base, payment)
    ocpp = _ocpp(_Section(data, "ocpp"), base, station) if "ocpp" in data else None

    d = _Section(data, "data", required=False)
    data_dir = Path(d.text("dir", "var/lib/ev-terminal"))
    keys = d.get("keys_dir", str, None)
    d.finish()
    return Config(
        station=station,
        payment=payment,
        tariff=tariff,
        session=session,
        gateway=gateway,
        hardware=hardware,
        data_dir=data_dir if data_dir.is_absolute() else base / data_dir,
        keys_dir=(Path(keys) if Path(keys).is_absolute() else base / keys) if keys else None,
        console=console,
        offline=offline,
        ocpp=ocpp,
        source=source,
    )
