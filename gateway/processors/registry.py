"""Which processor and merchant account take a payment, and where an existing one lives.

`route` chooses for a new hold by the first rule that matches the terminal, its site, the
currency and the payment method; `get` finds the adapter a recorded authorization names, so a
capture, release or refund always goes where the hold is, whatever the rules say later.
Rules can be replaced while the gateway runs (`set_routes`): holds in flight finish where
they started.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
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

    def __init__(self, adapters: Iterable[Processor], routes: Sequence[Route] = ()) -> None:
        self._adapters: dict[tuple[str, str], Processor] = {}
        for adapter in adapters:
            self._adapters[(adapter.name, adapter.account)] = adapter
        if not self._adapters:
            raise ValueError("at least one processor adapter is needed")
        first = next(iter(self._adapters.values()))
        self._default = Route(processor=first.name, account=first.account)
        self._lock = threading.Lock()
        self._routes: tuple[Route, ...] = ()
        self.set_routes(routes)

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
        with self._lock:
            routes = self._routes
        for rule in routes:
            if rule.matches(terminal=terminal, site=site, currency=currency, method=method):
                return self._adapters[(rule.processor, rule.account)]
        return self._adapters[(self._default.processor, self._default.account)]

    def get(self, processor: str, account: str) -> Processor:
        try:
            return self._adapters[(processor, account)]
        except KeyError:
            raise UnknownProcessor(f"no adapter for {processor}/{account}") from None

    def all(self) -> list[Processor]:
        return list(self._adapters.values())
