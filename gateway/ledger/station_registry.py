"""The station registry: where each terminal stands (name, site, address, IANA time zone),
which charge point operator sells there, and the public key its signed readings verify with;
and the operators themselves (name, address, VAT identification number). The receipt page and
the invoices read it; an admin edits it in the console, each change audited in its own
transaction. A terminal without a row is shown by its id, in UTC, with no seller.

Input is checked before anything is stored (`RegistryError` names the field): the zone must be
one `zoneinfo` knows, the operator must exist, the key must be a public key (hex or base64
DER, as `terminal.ocmf.load_public_key` reads it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Connection, Engine

from gateway.ledger.invoice_schema import cpos
from gateway.ledger.web_schema import stations
from terminal import ocmf

Audit = Callable[[Connection, str, str, str, dict[str, Any]], None]

CPO_ID = re.compile(r"^[A-Za-z0-9-]{1,32}$")
# A VAT identification number: a two-letter country prefix (ISO 3166, "EL" for Greece) and
# 2-13 letters or digits (Art. 215 VAT Directive; VIES's formats all fit this).
VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z+*]{2,13}$")


class RegistryError(ValueError):
    """A registry entry that cannot be stored; `field` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Cpo:
    """A charge point operator: the seller on receipts and invoices."""

    cpo_id: str
    name: str
    address: str
    vat_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Station:
    """A terminal as the registry knows it (`known` False: no row, defaults shown)."""

    terminal_id: str
    name: str
    site: str
    address: str
    timezone: str
    cpo: Cpo | None
    ocmf_public_key: str
    known: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _cpo(row: Any) -> Cpo:
    return Cpo(cpo_id=row.id, name=row.name, address=row.address, vat_id=row.vat_id)


def cpo_list(engine: Engine) -> list[Cpo]:
    with engine.connect() as conn:
        return [_cpo(r) for r in conn.execute(sa.select(cpos).order_by(cpos.c.id))]


def station(engine: Engine, terminal_id: str) -> Station:
    """The registry's entry for `terminal_id` (a default one when it has none)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(stations).where(stations.c.terminal_id == terminal_id)).first()
        seller = (
            conn.execute(sa.select(cpos).where(cpos.c.id == row.cpo_id)).first()
            if row is not None and row.cpo_id
            else None
        )
    if row is None:
        return Station(
            terminal_id=terminal_id,
            name="",
            site="",
            address="",
            timezone="UTC",
            cpo=None,
            ocmf_public_key="",
            known=False,
        )
    return Station(
        terminal_id=row.terminal_id,
        name=row.name,
        site=row.site,
        address=row.address,
        timezone=row.timezone if _is_zone(row.timezone) else "UTC",
        cpo=None if seller is None else _cpo(seller),
        ocmf_public_key=row.ocmf_public_key,
    )


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def station_list(engine: Engine) -> list[Station]:
    with engine.connect() as conn:
        ids = conn.execute(sa.select(stations.c.terminal_id).order_by(stations.c.terminal_id))
        terminal_ids = list(ids.scalars())
    return [station(engine, t) for t in terminal_ids]


def _text(field: str, value: str, limit: int, *, required: bool = False) -> str:
    value = " ".join(value.split())
    if required and not value:
        raise RegistryError(field, "required")
    if len(value) > limit:
        raise RegistryError(field, f"at most {limit} characters")
    return value


def vat_id(field: str, value: str) -> str:
    """A VAT identification number as stored: upper case, no spaces, dots or dashes."""
    compact = re.sub(r"[\s.\-]", "", value).upper()
    if not VAT_ID.match(compact):
        raise RegistryError(field, "not a VAT number (country prefix and 2-13 letters or digits)")
    return compact


def put_cpo(
    engine: Engine,
    *,
    cpo_id: str,
    name: str,
    address: str,
    vat: str,
    audit: Audit,
    actor: str,
) -> Cpo:
    """Add or change an operator (its invoice series continues)."""
    if not CPO_ID.match(cpo_id):
        raise RegistryError("cpo_id", "1-32 letters, digits or '-'")
    entry = Cpo(
        cpo_id=cpo_id,
        name=_text("name", name, 128, required=True),
        address=_text("address", address, 256, required=True),
        vat_id=vat_id("vat_id", vat),
    )
    values = {"name": entry.name, "address": entry.address, "vat_id": entry.vat_id}
    with engine.begin() as conn:
        changed = conn.execute(sa.update(cpos).where(cpos.c.id == cpo_id).values(**values))
        if not changed.rowcount:
            conn.execute(sa.insert(cpos).values(id=cpo_id, **values))
        audit(conn, actor, "cpo.save", cpo_id, {**values, "new": not changed.rowcount})
    return entry


def put_station(
    engine: Engine,
    *,
    terminal_id: str,
    name: str,
    site: str,
    address: str,
    timezone: str,
    cpo_id: str,
    ocmf_public_key: str,
    audit: Audit,
    actor: str,
) -> None:
    """Add or change a terminal's entry."""
    if not 1 <= len(terminal_id) <= 64 or terminal_id != terminal_id.strip():
        raise RegistryError("terminal_id", "1-64 characters, no surrounding spaces")
    if timezone not in available_timezones():  # the tz database's names, no file paths
        raise RegistryError("timezone", f"{timezone!r} is not an IANA time zone")
    key = "".join(ocmf_public_key.split())
    if key:
        try:
            der = ocmf.load_public_key(key)
            serialization.load_der_public_key(der)
        except (ocmf.OcmfError, ValueError):
            raise RegistryError("ocmf_public_key", "not a public key (hex or base64 DER)") from None
        key = der.hex().upper()
    values = {
        "name": _text("name", name, 128, required=True),
        "site": _text("site", site, 64),
        "address": _text("address", address, 256, required=True),
        "timezone": timezone,
        "cpo_id": cpo_id,
        "ocmf_public_key": key,
    }
    with engine.begin() as conn:
        if cpo_id and conn.execute(sa.select(cpos.c.id).where(cpos.c.id == cpo_id)).first() is None:
            raise RegistryError("cpo_id", f"no operator {cpo_id!r}")
        changed = conn.execute(
            sa.update(stations).where(stations.c.terminal_id == terminal_id).values(**values)
        )
        if not changed.rowcount:
            conn.execute(sa.insert(stations).values(terminal_id=terminal_id, **values))
        audit(conn, actor, "station.save", terminal_id, {**values, "new": not changed.rowcount})
