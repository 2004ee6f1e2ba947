"""Processor adapters built from the gateway's configuration, one table per merchant account.

```toml
[[processors]]
adapter = "stripe"
account = "acct_1Nv0FGQ9RKHgCVdK"
api_key_file = "/etc/ev-gateway/stripe-api.key"      # or api_key_env = "STRIPE_API_KEY"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"        # or webhook_secret_file
incremental = true                                   # the account has incremental authorization
publishable_key = "pk_live_51Nv0FG..."               # the phone's card form (pay by phone)
country = "DE"                                       # the account's country: wallet buttons

[[processors]]
adapter = "adyen"
account = "EvChargingECOM"
api_key_env = "ADYEN_API_KEY"
hmac_key_file = "/etc/ev-gateway/adyen-hmac.key"
checkout_url = "https://1797a841fbb37ca7-AdyenDemo-checkout-live.adyenpayments.com/checkout/v71"
return_url = "https://pay.example.org/return"
live = true
cse_public_key = "10001|A2370601..."  # the phone's card form (pay by phone)

[[processors]]
adapter = "lightning"
account = "kiosk-wallet"
url = "https://lnbits.example.org"
invoice_key_file = "/etc/ev-gateway/lnbits-invoice.key"
admin_key_file = "/etc/ev-gateway/lnbits-admin.key"
webhook_url = "https://gateway.example.org/v1/webhooks/lightning"
```

Secrets come only from files or the environment (`secrets.read_secret`); a key the table does
not know, a value of the wrong type or a missing secret is a `ConfigError` naming
``processors[N].key``, never a secret's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.processors.adyen import CSE_KEY, AdyenProcessor
from gateway.processors.lightning import LightningProcessor
from gateway.processors.lightning_rates import LnbitsRates
from gateway.processors.port import Processor
from gateway.processors.secrets import read_secret
from gateway.processors.stripe import STRIPE_JS, StripeProcessor
from terminal.errors import ConfigError


class _Table:
    """One ``[[processors]]`` table, read key by key; `done` refuses what was not read."""

    def __init__(self, table: Mapping[str, Any], where: str, environ: Mapping[str, str] | None):
        self._table = table
        self._where = where
        self._environ = environ
        self._read: set[str] = {"adapter"}

    def where(self, key: str) -> str:
        """The key's name in an error: ``processors[N].key``."""
        return f"{self._where}.{key}"

    def text(self, key: str, default: str | None = None) -> str:
        self._read.add(key)
        value = self._table.get(key, default)
        if value is None:
            raise ConfigError(f"{self._where}.{key}", "is required")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self._where}.{key}", "must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        if key not in self._table:
            self._read.add(key)
            return None
        return self.text(key)

    def flag(self, key: str, default: bool) -> bool:
        self._read.add(key)
        value = self._table.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where}.{key}", "must be true or false")
        return value

    def number(self, key: str, default: int) -> int:
        self._read.add(key)
        value = self._table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{self._where}.{key}", "must be a positive whole number")
        return value

    def secret(self, key: str) -> str:
        """`key_file` or `key_env`, exactly one of them."""
        file_key, env_key = f"{key}_file", f"{key}_env"
        self._read.update((file_key, env_key))
        if key in self._table:
            raise ConfigError(
                f"{self._where}.{key}",
                f"a secret never sits in the config: use {file_key} or {env_key}",
            )
        file = self._table.get(file_key)
        env = self._table.get(env_key)
        if file is not None and not isinstance(file, str):
            raise ConfigError(f"{self._where}.{file_key}", "must be a path")
        if env is not None and not isinstance(env, str):
            raise ConfigError(f"{self._where}.{env_key}", "must be a variable name")
        return read_secret(
            key=f"{self._where}.{key}",
            file=Path(file) if file is not None else None,
            env=env,
            environ=self._environ,
        )

    def done(self) -> None:
        for key in self._table:
            if key in self._read:
                continue
            if f"{key}_file" in self._read:
                raise ConfigError(
                    f"{self._where}.{key}",
                    f"a secret never sits in the config: use {key}_file or {key}_env",
                )
            raise ConfigError(f"{self._where}.{key}", "unknown key")


def _stripe(t: _Table) -> Processor:
    processor = StripeProcessor(
        account=t.text("account"),
        api_key=t.secret("api_key"),
        webhook_secret=t.secret("webhook_secret"),
        api_base=t.optional_text("api_base"),
        incremental=t.flag("incremental", False),
        timeout_s=t.number("timeout_s", 20),
        publishable_key=t.optional_text("publishable_key"),
        js_url=t.text("js_url", STRIPE_JS),
        country=_country(t),
    )
    t.done()
    return processor


def _country(t: _Table) -> str | None:
    country = t.optional_text("country")
    if country is not None and not (len(country) == 2 and country.isascii() and country.isalpha()):
        raise ConfigError(t.where("country"), "must be a two-letter country code (ISO 3166-1)")
    return country


def _adyen(t: _Table) -> Processor:
    cse_key = t.optional_text("cse_public_key")
    if cse_key is not None and not CSE_KEY.fullmatch(cse_key):
        raise ConfigError(
            t.where("cse_public_key"), "must be Adyen's client-side encryption key, 10001|HEX"
        )
    processor = AdyenProcessor(
        account=t.text("account"),
        api_key=t.secret("api_key"),
        hmac_key=t.secret("hmac_key"),
        checkout_url=t.text("checkout_url"),
        return_url=t.text("return_url"),
        live=t.flag("live", False),
        timeout_s=t.number("timeout_s", 20),
        cse_public_key=cse_key,
    )
    t.done()
    return processor


def _lightning(t: _Table) -> Processor:
    url = t.text("url")
    timeout_s = t.number("timeout_s", 10)
    processor = LightningProcessor(
        account=t.text("account"),
        url=url,
        invoice_key=t.secret("invoice_key"),
        admin_key=t.secret("admin_key"),
        rates=LnbitsRates(t.text("rate_url", url), timeout_s=timeout_s),
        webhook_url=t.optional_text("webhook_url"),
        expiry_s=t.number("expiry_s", 600),
        timeout_s=timeout_s,
    )
    t.done()
    return processor


# The adapters a table may name; the simulated processor is built by the gateway's own root.
BUILDERS: dict[str, Callable[[_Table], Processor]] = {
    "stripe": _stripe,
    "adyen": _adyen,
    "lightning": _lightning,
}


def build_processors(
    tables: Sequence[Mapping[str, Any]],
    *,
    where: str = "processors",
    environ: Mapping[str, str] | None = None,
    simulated: Callable[[str], Processor] | None = None,
) -> list[Processor]:
    """One adapter per table, in order; two tables for one (adapter, account) are refused.
    With `simulated` (the gateway's root gives it: the simulated processor keeps its books in
    the gateway's database), a table may also name ``adapter = "simulated"`` and an
    ``account``."""
    builders = dict(BUILDERS)
    if simulated is not None:
        make = simulated

        def _simulated(t: _Table) -> Processor:
            processor = make(t.text("account"))
            t.done()
            return processor

        builders["simulated"] = _simulated
    built: list[Processor] = []
    seen: set[tuple[str, str]] = set()
    for index, table in enumerate(tables):
        at = f"{where}[{index}]"
        if not isinstance(table, Mapping):
            raise ConfigError(at, "must be a table")
        adapter = table.get("adapter")
        if adapter not in builders:
            names = ", ".join(sorted(builders))
            raise ConfigError(f"{at}.adapter", f"must be one of {names}, not {adapter!r}")
        processor = builders[str(adapter)](_Table(table, at, environ))
        if (processor.name, processor.account) in seen:
            raise ConfigError(f"{at}.account", f"{processor.account!r} is configured twice")
        seen.add((processor.name, processor.account))
        built.append(processor)
    return built
