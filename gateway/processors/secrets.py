"""Processor secrets (API keys, webhook secrets, HMAC keys): read from a file or the environment.

A secret never sits in the gateway's config file and never reaches a log: the config names
where it lives (``api_key_file = "/etc/ev-gateway/stripe.key"`` or ``api_key_env =
"STRIPE_API_KEY"``) and this module reads it once, when the adapter is built. A missing or
empty secret is a `ConfigError` that names the config key, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from terminal.errors import ConfigError


def read_secret(
    *,
    key: str,
    file: Path | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The secret named by config key `key`, from `file` (surrounding whitespace stripped, as
    an editor leaves a trailing newline) or else from the environment variable `env`.

    Exactly one source must be given. `environ` defaults to the process environment."""
    if (file is None) == (env is None):
        raise ConfigError(key, f"give exactly one of {key}_file or {key}_env")
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}_file", f"cannot read {file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{key}_file", f"{file} is empty")
        return value
    assert env is not None
    value = (os.environ if environ is None else environ).get(env, "").strip()
    if not value:
        raise ConfigError(f"{key}_env", f"environment variable {env} is not set or empty")
    return value
