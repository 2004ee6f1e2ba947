"""Processor secrets come from a file or the environment; a missing one names its config key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.processors.secrets import read_secret
from terminal.errors import ConfigError


def test_a_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "stripe.key"
    path.write_text("sk_live_abc\n")
    assert read_secret(key="api_key", file=path) == "sk_live_abc"


def test_a_secret_is_read_from_the_environment() -> None:
    assert read_secret(key="api_key", env="K", environ={"K": " whsec_x "}) == "whsec_x"


def test_a_missing_file_names_the_config_key_and_not_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^api_key_file: cannot read"):
        read_secret(key="api_key", file=tmp_path / "absent")


def test_an_empty_file_or_variable_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"^hmac_key_file: .* is empty"):
        read_secret(key="hmac_key", file=empty)
    with pytest.raises(ConfigError, match=r"^hmac_key_env: environment variable H"):
        read_secret(key="hmac_key", env="H", environ={})


def test_exactly_one_source_is_given() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        read_secret(key="api_key")
    with pytest.raises(ConfigError, match="exactly one"):
        read_secret(key="api_key", file=Path("x"), env="Y")
