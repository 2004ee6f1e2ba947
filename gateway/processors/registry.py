"""Which processor and merchant account take a payment, and where an existing one lives.

`route` chooses for a new hold by the first rule that matches the terminal, its site, the
currency and the payment method; `get` finds the adapter a recorded authorization names, so a
capture, release or refund always goes where the hold is, whatever the rules say later.
Rules and adapters can be replaced while the gateway runs (`set_routes`, `reconfigure`):
holds in flight finish where they started.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.processors.methods import METHODS
from gateway.processors.port import Processor


class UnknownProcessor(LookupError):
    """No adapter is configured for that processor and merchant account."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A routing rule: every field left None matches anything."""

    processor: str
    account: str
    terminal: str | None = None
    site: str | None = None
    currency: str | None = None
    method: str | None = None  # one of `methods.METHODS`

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"unknown payment method {self.method!r}")

    def matches(self, *, terminal: str, site: str | None, currency: str, method: str) -> bool:
        return (
            (self.terminal is None or self.terminal == terminal)
            and (self.site is None or self.site == site)
            and (self.currency is None or self.currency == currency)
            and (self.method is None or self.method == method)
        )


class Processors:
    """The configured adapters, by (processor name, merchant account), and the routing rules.

    The first adapter given is the default route when no rule matches."""

    def __init__(
        self,
        adapters: Iterable[Processor],
        routes: Sequence[Route] = (),
        sites: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[tuple[str, str], Processor] = {}
        self._routes: tuple[Route, ...] = ()
        self._sites: dict[str, str] = {}
        self.reconfigure(adapters, routes, sites)

    def reconfigure(
        self,
        adapters: Iterable[Processor],
        routes: Sequence[Route] = (),
        sites: Mapping[str, str] | None = None,
    ) -> None:
        """Take a new configuration for the next new hold: the adapters given (the first is the
        default route; one for an account already known replaces it, e.g. with a rotated
        key), the rules and the terminals' sites. An adapter no longer given stays reachable
        by `get`, so the holds it placed still capture, release and refund there."""
        given = list(adapters)
        if not given:
            raise ValueError("at least one processor adapter is needed")
        known = {(a.name, a.account) for a in given}
        for route in routes:
            if (route.processor, route.account) not in known:
                raise UnknownProcessor(f"route names {route.processor}/{route.account}")
        with self._lock:
            for adapter in given:
                self._adapters[(adapter.name, adapter.account)] = adapter
            self._default = Route(processor=given[0].name, account=given[0].account)
            self._routes = tuple(routes)
            self._sites = dict(sites or {})

    def set_routes(self, routes: Sequence[Route]) -> None:
        """Replace the rules (takes effect for the next new hold); every rule must name a
        configured adapter."""
        for route in routes:
            if (route.processor, route.account) not in self._adapters:
                raise UnknownProcessor(f"route names {route.processor}/{route.account}")
        with self._lock:
            self._routes = tuple(routes)

    def route(
        self, *, terminal: str, currency: str, method: str, site: str | None = None
    ) -> Processor:
        """The adapter for a new hold: the first matching rule's, else the default. The
        terminal's site is the configured one unless `site` is given."""
        with self._lock:
            routes, default = self._routes, self._default
            site = site if site is not None else self._sites.get(terminal)
            adapters = dict(self._adapters)
        for rule in routes:
            if rule.matches(terminal=terminal, site=site, currency=currency, method=method):
                return adapters[(rule.processor, rule.account)]
        return adapters[(default.processor, default.account)]

    def get(self, processor: str, account: str) -> Processor:
        with self._lock:
            found = self._adapters.get((processor, account))
        if found is None:
            raise UnknownProcessor(f"no adapter for {processor}/{account}")
        return found

    def all(self) -> list[Processor]:
        with self._lock:
            return list(self._adapters.values())
