"""The composition root: builds every object of a running kiosk from the config, once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hardware.clock import Clock
from hardware.sim.contactor import SimContactor
from hardware.sim.display import SimDisplay
from hardware.sim.meter import SimMeter
from hardware.sim.plant import Plant
from hardware.sim.reader import SimReader
from hardware.sim.vehicle import SimVehicle
from terminal.config import Config
from terminal.core.billing import EnergyTariff, Tariff
from terminal.core.events import Event
from terminal.core.kiosk import OfflinePolicy, Rules
from terminal.core.words import render
from terminal.errors import KeyMaterialError, KeyStateUnsaved
from terminal.i18n import station_words
from terminal.money import Money
from terminal.protection.keys import provision_fleet
from terminal.protection.module import ProtectionModule
from terminal.shell.acquire import CardAcquirer
from terminal.shell.daemon import Daemon
from terminal.shell.devices import Devices
from terminal.shell.gateway_client import GatewayClient
from terminal.shell.journal_damage import open_journal
from terminal.shell.local_lists import LocalLists
from terminal.shell.notify import Notifier
from terminal.shell.sender import Sender
from terminal.shell.signed_readings import MeterIdentity, ReadingSigner
from terminal.shell.tariffs import TariffBook
from terminal.tariff import OcpiTariff

SIM_FLEET = "sim-fleet"


def build_tariff(config: Config) -> Tariff:
    """The OCPI tariff when `tariff.ocpi_file` is set (in the station's time zone), else the
    simple per-kWh tariff."""
    t = config.tariff
    if t.ocpi_file is not None:
        return OcpiTariff.from_json(
            t.ocpi_file.read_bytes(),
            tz=ZoneInfo(config.station.timezone),
            label=t.name,
        )
    return EnergyTariff(
        name=t.name,
        currency=config.payment.currency,
        per_kwh=t.per_kwh,
        session_fee=t.session_fee,
        vat_percent=t.vat_percent,
    )


def _pwm_control(config: Config) -> bool:
    """The kiosk drives the pilot's PWM unless `[hardware.vehicle] kind = "gpio"` (a pilot
    front end the kiosk only reads; docs/drivers.md)."""
    vehicle = dict(config.hardware.settings).get("vehicle")
    return not (
        config.hardware.backend == "pi"
        and isinstance(vehicle, dict)
        and vehicle.get("kind") == "gpio"
    )


def build_rules(config: Config, tariff: Tariff) -> Rules:
    cur = config.payment.currency
    s = config.session
    return Rules(
        tariff=tariff,
        hold=Money(config.payment.hold, cur),
        min_authorized=Money(config.payment.min_authorized, cur),
        station=config.station.name,
        receipt_url=config.gateway.receipt_url,
        increment=Money(config.payment.increment, cur) if config.payment.increment else None,
        ceiling=Money(config.payment.ceiling, cur) if config.payment.increment else None,
        authorization_timeout_ms=s.authorization_timeout_ms,
        plug_in_timeout_ms=s.plug_in_timeout_ms,
        suspended_timeout_ms=s.suspended_timeout_ms,
        receipt_ms=s.receipt_ms,
        notice_ms=s.notice_ms,
        sample_interval_ms=s.sample_interval_ms,
        contactor_check_ms=s.contactor_check_ms,
        max_current_a=s.max_current_a,
        pilot_release_ms=s.pilot_release_ms,
        pwm_control=_pwm_control(config),
        taper_at_percent=s.taper_at_percent,
        taper_current_a=s.taper_current_a,
        offline=offline_policy(config),
    )


def offline_policy(config: Config) -> OfflinePolicy:
    o, cur = config.offline, config.payment.currency
    return OfflinePolicy(
        local_list=o.local_list,
        store_and_forward=o.store_and_forward,
        max_session=Money(o.max_session, cur) if o.store_and_forward else None,
        max_outstanding=Money(o.max_outstanding, cur) if o.store_and_forward else None,
        max_count=o.max_count,
        max_age_ms=o.max_age_ms,
    )


@dataclass
class SimHardware:
    """The simulated devices of one kiosk, with their shared physics."""

    plant: Plant
    reader: SimReader
    contactor: SimContactor
    meter: SimMeter
    vehicle: SimVehicle
    display: SimDisplay

    @classmethod
    def build(cls, clock: Clock, display: SimDisplay | None = None) -> SimHardware:
        plant = Plant(clock)
        return cls(
            plant=plant,
            reader=SimReader(),
            contactor=SimContactor(plant),
            meter=SimMeter(plant),
            vehicle=SimVehicle(plant),
            display=display or SimDisplay(),
        )

    def devices(self) -> Devices:
        return Devices(
            reader=self.reader,
            contactor=self.contactor,
            meter=self.meter,
            vehicle=self.vehicle,
            display=self.display,
        )


def sim_keys(data_dir: Path, device: str) -> tuple[Path, Path]:
    """A simulated fleet's keys under the data dir (provisioned once); returns the device's
    key dir and the gateway's key dir."""
    root = data_dir / "keys"
    device_dir = root / "devices" / device
    if not device_dir.exists():
        if (root / "gateway").exists():
            raise FileNotFoundError(f"{device_dir}: missing, but the fleet exists")
        provision_fleet(root, fleet_id=SIM_FLEET, devices=[device])
    return device_dir, root / "gateway"


def build_daemon(
    *,
    config: Config,
    devices: Devices,
    clock: Clock,
    gateway_url: str,
    key_dir: Path,
    new_id: Callable[[], str] | None = None,
    notifier: Notifier | None = None,
) -> Daemon:
    # A damaged journal is set aside and a new one opened (journal_damage.py): the daemon
    # starts with the fault `journal_damaged` until the gateway's open holds are reconciled.
    opened = open_journal(config.data_dir / "journal.sqlite3", config.station.id)
    journal = opened.journal
    # Keys that cannot be loaded are a device fault (out of service, on the console, an event
    # to the gateway), not a crash at start-up: the journal still settles what it holds.
    protection: ProtectionModule | None = None
    key_problem: str | None = None
    try:
        protection = ProtectionModule.from_key_dir(key_dir)
    except KeyMaterialError as exc:
        key_problem = str(exc)
    else:
        if protection.next_counter is None:
            key_problem = "DUKPT transaction counter exhausted; the device needs a new initial key"
    acquirer = CardAcquirer(
        protection=protection,
        key_problem=key_problem,
        clock=clock,
        currency=config.payment.currency,
        amount_minor=config.payment.hold,
        timezone=config.station.timezone,
    )
    g = config.gateway
    client = GatewayClient(
        gateway_url,
        g.timeout_ms,
        ca_file=g.ca_file,
        cert_file=g.cert_file,
        key_file=g.key_file,
    )

    lists = LocalLists(config.data_dir, config.offline.list_file)
    # The tariff new sessions are priced by: the last one the gateway sent (journaled), else
    # the config file's (tariffs.py).
    tariffs = TariffBook(
        journal,
        configured=build_tariff(config),
        tz=ZoneInfo(config.station.timezone),
        currency=config.payment.currency,
    )

    def sender_factory(post: Callable[[Event], None]) -> Sender:
        return Sender(
            journal,
            client,
            clock,
            post,
            lists=lists,
            sync_every_ms=config.offline.sync_interval_ms,
            terminal_id=config.station.id,
            tariffs=tariffs,
        )

    signer = ReadingSigner(
        key_dir,
        terminal_id=config.station.id,
        charge_point=config.station.id,
        meter=MeterIdentity(
            vendor="ev-terminal" if config.hardware.backend == "sim" else "modbus",
            model=config.hardware.backend,
            serial=config.station.id,
        ),
    )

    def check_key_stores() -> None:
        """Write the DUKPT registers and the pagination counter again, using nothing
        (KeyStateUnsaved while they cannot be written). At start this also makes the slot
        files of a key directory kept in the older format, so that no later tap or reading
        needs new disk space (`protection/slots.py`)."""
        if protection is not None:
            protection.store_ready()
        signer.store_ready()

    # A key state that cannot be written now (a full disk at start) is a fault that clears
    # by itself once it can (the daemon writes it again at every room check meanwhile).
    keys_unsaved: str | None = None
    if key_problem is None:
        try:
            check_key_stores()
        except KeyStateUnsaved as exc:
            keys_unsaved = str(exc)
    tariff_key, tariff = tariffs.current()
    rules = replace(build_rules(config, tariff), tariff_key=tariff_key)
    words = station_words(config.station.language, ZoneInfo(config.station.timezone))

    def offer() -> dict[str, Any]:
        """What the idle screen offers, for the payment page the QR code opens (AFIR: the
        price before the start, in each of the station's languages)."""
        phrases = tariffs.current()[1].price_phrases(clock.now())  # as the idle screen
        every = words[1]
        return {
            "station": config.station.name,
            "hold": {"minor": config.payment.hold, "currency": config.payment.currency},
            "language": config.station.language,
            "price": {w.language: [render(w, p) for p in phrases] for w in every},
        }

    return Daemon(
        offer=offer if config.payment.pay_by_phone else None,
        rules=rules,
        devices=devices,
        journal=journal,
        sender_factory=sender_factory,
        clock=clock,
        terminal_id=config.station.id,
        acquire=acquirer,
        key_problem=key_problem,
        keys_unsaved=keys_unsaved,
        check_key_stores=check_key_stores,
        journal_damage=opened.damage,
        tariffs=tariffs,
        notifier=notifier,
        signer=signer,
        lists=lists,
        words=words,
        **({"new_id": new_id} if new_id is not None else {}),
    )
