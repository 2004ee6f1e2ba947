"""The gateway's processor configuration file: which adapters, and which one takes a payment.

```toml
[[processors]]                      # the first one is the default route
adapter = "simulated"               # the kiosk's own reader (tests, demos)
account = "kiosk-acquirer"

[[processors]]
adapter = "stripe"
account = "acct_1Nv0FGQ9RKHgCVdK"
api_key_file = "/etc/ev-gateway/stripe-api.key"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"

[[routes]]                          # the first rule that matches a new hold wins
processor = "stripe"
account = "acct_1Nv0FGQ9RKHgCVdK"
method = "web_card"                 # and/or site, terminal, currency; a missing key matches all

[sites]                             # which terminals stand at which site
"Depot Nord" = ["kiosk-1", "kiosk-2"]
```

`[[processors]]` tables are built by `configured.build_processors` (secrets from files or the
environment only). A route's `method` is one of `methods.METHODS`. A key the file does not
know, a value of the wrong type, a route naming no configured account, or a terminal in two
sites is a `ConfigError` naming the key (``routes[1].method``). Reading the file builds new
adapter objects each time, so a running gateway can take a new file (`RoutingReload`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.processors.configured import build_processors
from gateway.processors.methods import METHODS
from gateway.processors.port import Processor
from gateway.processors.registry import Route
from terminal.errors import ConfigError

TOP_KEYS = frozenset({"processors", "routes", "sites"})
ROUTE_KEYS = ("processor", "account", "terminal", "site", "currency", "method")
CURRENCY = re.compile(r"^[A-Z]{3}$")  # ISO 4217 alphabetic code


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """What the file configures: the adapters (the first is the default), the rules, and the
    terminals of each site."""

    adapters: tuple[Processor, ...]
    routes: tuple[Route, ...]
    sites: Mapping[str, str]  # terminal id -> site


def load_routing(
    path: Path,
    *,
    simulated: Callable[[str], Processor],
    environ: Mapping[str, str] | None = None,
) -> Routing:
    """Read and check the file at `path`. `simulated(account)` builds a simulated adapter (it
    lives in the gateway's own database, which only the composition root knows)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"not TOML: {exc}") from None
    return parse_routing(document, simulated=simulated, environ=environ)


def parse_routing(
    document: Mapping[str, Any],
    *,
    simulated: Callable[[str], Processor],
    environ: Mapping[str, str] | None = None,
) -> Routing:
    for key in document:
        if key not in TOP_KEYS:
            raise ConfigError(key, "unknown key (processors, routes, sites)")
    tables = _tables(document, "processors")
    if not tables:
        raise ConfigError("processors", "at least one [[processors]] table is needed")
    adapters = build_processors(tables, environ=environ, simulated=simulated)
    known = {(a.name, a.account) for a in adapters}
    sites = _sites(document.get("sites", {}))
    routes = tuple(
        _route(table, f"routes[{i}]", known, set(sites.values()))
        for i, table in enumerate(_tables(document, "routes"))
    )
    return Routing(adapters=tuple(adapters), routes=routes, sites=sites)


def _tables(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(key, f"must be an array of tables ([[{key}]])")
    for index, table in enumerate(value):
        if not isinstance(table, Mapping):
            raise ConfigError(f"{key}[{index}]", "must be a table")
    return value


def _sites(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError("sites", "must be a table of site = [terminal ids]")
    where: dict[str, str] = {}
    for site, terminals in value.items():
        if not isinstance(terminals, list) or not all(isinstance(t, str) and t for t in terminals):
            raise ConfigError(f"sites.{site}", "must be a list of terminal ids")
        for terminal in terminals:
            if terminal in where:
                raise ConfigError(f"sites.{site}", f"{terminal!r} is also at {where[terminal]!r}")
            where[terminal] = site
    return where


def _route(
    table: Mapping[str, Any], at: str, known: set[tuple[str, str]], sites: set[str]
) -> Route:
    for key, value in table.items():
        if key not in ROUTE_KEYS:
            raise ConfigError(f"{at}.{key}", f"unknown key ({', '.join(ROUTE_KEYS)})")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{at}.{key}", "must be a non-empty string")
    for key in ("processor", "account"):
        if key not in table:
            raise ConfigError(f"{at}.{key}", "is required")
    if (table["processor"], table["account"]) not in known:
        raise ConfigError(
            f"{at}.account",
            f"no [[processors]] table for {table['processor']}/{table['account']}",
        )
    method = table.get("method")
    if method is not None and method not in METHODS:
        raise ConfigError(f"{at}.method", f"must be one of {', '.join(sorted(METHODS))}")
    currency = table.get("currency")
    if currency is not None and not CURRENCY.match(currency):
        raise ConfigError(f"{at}.currency", "must be an ISO 4217 code such as EUR")
    site = table.get("site")
    if site is not None and site not in sites:
        raise ConfigError(f"{at}.site", f"no terminal is listed at {site!r} in [sites]")
    return Route(
        processor=table["processor"],
        account=table["account"],
        terminal=table.get("terminal"),
        site=site,
        currency=currency,
        method=method,
    )
