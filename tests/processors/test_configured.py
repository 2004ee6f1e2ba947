"""Adapters built from the gateway's ``[[processors]]`` tables; secrets from files or the
environment; every mistake names its key and never a secret."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.processors.adyen import AdyenProcessor
from gateway.processors.configured import build_processors
from gateway.processors.lightning import LightningProcessor
from gateway.processors.port import Capability, Outcome
from gateway.processors.stripe import StripeProcessor
from terminal.errors import ConfigError
from terminal.money import Money
from tests.processors.conftest import new_key, new_payment_id
from tests.processors.stack import STRIPE_APPROVE, STRIPE_KEY, stripe_payment_method

ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_from_env",
    "ADYEN_API_KEY": "AQE_from_env",
    "LNBITS_ADMIN": "admin-from-env",
}


def _tables(text: str) -> list[dict[str, Any]]:
    tables: list[dict[str, Any]] = tomllib.loads(text)["processors"]
    return tables


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    path.write_text(f"{STRIPE_KEY}\n")
    return path


def test_each_adapter_is_built_from_its_table(key_file: Path) -> None:
    built = build_processors(
        _tables(f"""
[[processors]]
adapter = "stripe"
account = "acct_eu"
api_key_file = "{key_file}"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"
incremental = true

[[processors]]
adapter = "adyen"
account = "EvChargingECOM"
api_key_env = "ADYEN_API_KEY"
hmac_key_file = "{key_file}"
checkout_url = "https://checkout-test.adyen.com/v71"
return_url = "https://pay.example.org/return"

[[processors]]
adapter = "lightning"
account = "kiosk-wallet"
url = "https://lnbits.example.org"
invoice_key_file = "{key_file}"
admin_key_env = "LNBITS_ADMIN"
webhook_url = "https://gateway.example.org/v1/webhooks/lightning"
"""),
        environ=ENV,
    )
    stripe_, adyen, lightning = built
    assert isinstance(stripe_, StripeProcessor) and stripe_.account == "acct_eu"
    assert Capability.INCREMENT in stripe_.capabilities
    assert isinstance(adyen, AdyenProcessor) and adyen.account == "EvChargingECOM"
    assert isinstance(lightning, LightningProcessor) and lightning.account == "kiosk-wallet"
    for processor in built:
        shown = repr(processor)
        assert STRIPE_KEY not in shown and "from_env" not in shown


def test_a_built_stripe_adapter_holds_at_the_processor(localstripe: str, key_file: Path) -> None:
    (stripe_,) = build_processors(
        _tables(f"""
[[processors]]
adapter = "stripe"
account = "acct_eu"
api_key_file = "{key_file}"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"
api_base = "{localstripe}"
"""),
        environ=ENV,
    )
    result = stripe_.hold(
        key=new_key(),
        payment_id=new_payment_id(),
        card=stripe_payment_method(localstripe, STRIPE_APPROVE),
        amount=Money(5000, "EUR"),
    )
    assert result.outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ('api_kee_file = "x"', "processors[0].api_kee_file", "unknown key"),
        ("incremental = 1", "processors[0].incremental", "true or false"),
        ('timeout_s = "20"', "processors[0].timeout_s", "positive whole number"),
        ('country = "Germany"', "processors[0].country", "two-letter country code"),
        ('country = "D1"', "processors[0].country", "two-letter country code"),
    ],
)
def test_a_wrong_key_or_value_is_named(key_file: Path, extra: str, key: str, problem: str) -> None:
    text = f"""
[[processors]]
adapter = "stripe"
account = "acct_eu"
api_key_file = "{key_file}"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"
{extra}
"""
    with pytest.raises(ConfigError) as caught:
        build_processors(_tables(text), environ=ENV)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_a_missing_secret_names_its_key_and_shows_no_secret(key_file: Path) -> None:
    text = f"""
[[processors]]
adapter = "stripe"
account = "acct_eu"
api_key_file = "{key_file}"
webhook_secret_env = "NOT_SET_ANYWHERE"
"""
    with pytest.raises(ConfigError) as caught:
        build_processors(_tables(text), environ=ENV)
    assert caught.value.key == "processors[0].webhook_secret_env"
    assert STRIPE_KEY not in str(caught.value)


def test_a_secret_in_the_config_itself_is_refused(key_file: Path) -> None:
    text = f"""
[[processors]]
adapter = "stripe"
account = "acct_eu"
api_key = "{STRIPE_KEY}"
api_key_file = "{key_file}"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"
"""
    with pytest.raises(ConfigError) as caught:
        build_processors(_tables(text), environ=ENV)
    assert caught.value.key == "processors[0].api_key"
    assert "never sits in the config" in caught.value.problem
    assert STRIPE_KEY not in str(caught.value)


def test_an_unknown_adapter_or_a_repeated_account_is_refused(key_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"processors\[0\]\.adapter: must be one of"):
        build_processors([{"adapter": "paypal", "account": "x"}])
    table = {
        "adapter": "stripe",
        "account": "acct_eu",
        "api_key_file": str(key_file),
        "webhook_secret_env": "STRIPE_WEBHOOK_SECRET",
    }
    with pytest.raises(ConfigError, match=r"processors\[1\]\.account: 'acct_eu' is configured"):
        build_processors([table, dict(table)], environ=ENV)


@pytest.mark.parametrize(
    "value",
    ["A2370601", "10001|XYZ" + "0" * 300, "10001|" + "AB" * 20, "-----BEGIN PUBLIC KEY-----"],
)
def test_an_adyen_cse_key_that_is_not_one_is_named(key_file: Path, value: str) -> None:
    text = f"""
[[processors]]
adapter = "adyen"
account = "EvChargingECOM"
api_key_env = "ADYEN_API_KEY"
hmac_key_file = "{key_file}"
checkout_url = "https://checkout-test.adyen.com/v71"
return_url = "https://pay.example.org/return"
cse_public_key = "{value}"
"""
    with pytest.raises(ConfigError) as caught:
        build_processors(_tables(text), environ=ENV)
    assert caught.value.key == "processors[0].cse_public_key"
    assert "10001|HEX" in caught.value.problem
