"""[ocpp]: optional; each security profile names exactly the files it uses; errors name the
key and the kiosk without the section is unchanged."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from terminal.config import parse
from terminal.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "deploy" / "terminal.toml"


def _files(tmp_path: Path) -> dict[str, str]:
    names = {}
    for key, name in (
        ("password_file", "password"),
        ("ca_file", "ca.pem"),
        ("cert_file", "client.pem"),
        ("key_file", "client.key"),
    ):
        path = tmp_path / name
        path.write_text("x\n", encoding="utf-8")
        path.chmod(0o600)
        names[key] = str(path)
    return names


def _parse(tmp_path: Path, ocpp: dict[str, Any] | None) -> Any:
    data: dict[str, Any] = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    if ocpp is not None:
        data["ocpp"] = ocpp
    return parse(data, base=tmp_path)


def _error(tmp_path: Path, ocpp: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        _parse(tmp_path, ocpp)
    return str(caught.value)


def test_without_the_section_the_kiosk_has_no_ocpp(tmp_path: Path) -> None:
    assert _parse(tmp_path, None).ocpp is None


def test_profile_1_is_basic_auth_over_ws(tmp_path: Path) -> None:
    f = _files(tmp_path)
    config = _parse(
        tmp_path,
        {"url": "ws://csms.example:9000/ocpp/", "password_file": f["password_file"]},
    )
    assert config.ocpp.url == "ws://csms.example:9000/ocpp"
    assert config.ocpp.station_id == config.station.id
    assert config.ocpp.security_profile == 1
    assert config.ocpp.tx_updated_interval_ms == 60_000


def test_profile_3_is_a_client_certificate_over_wss(tmp_path: Path) -> None:
    f = _files(tmp_path)
    config = _parse(
        tmp_path,
        {
            "url": "wss://csms.example/ocpp",
            "security_profile": 3,
            "ca_file": f["ca_file"],
            "cert_file": f["cert_file"],
            "key_file": f["key_file"],
            "tx_updated_interval": "1s",
            "renew_before": "14d",
        },
    )
    assert config.ocpp.security_profile == 3
    assert config.ocpp.tx_updated_interval_ms == 1000
    assert config.ocpp.renew_before_ms == 14 * 86_400_000


@pytest.mark.parametrize(
    ("ocpp", "key"),
    [
        ({"password_file": "PW"}, "ocpp.url"),
        ({"url": "wss://x/ocpp", "password_file": "PW"}, "ocpp.url"),  # profile 1 is ws://
        ({"url": "ws://x/ocpp"}, "ocpp.password_file"),
        ({"url": "ws://x/ocpp", "password_file": "PW", "ca_file": "CA"}, "ocpp.ca_file"),
        ({"url": "wss://x/ocpp", "security_profile": 2, "password_file": "PW"}, "ocpp.ca_file"),
        (
            {"url": "wss://x/ocpp", "security_profile": 3, "ca_file": "CA", "password_file": "PW"},
            "ocpp.password_file",
        ),
        ({"url": "wss://x/ocpp", "security_profile": 3, "ca_file": "CA"}, "ocpp.cert_file"),
        (
            {"url": "ws://x/ocpp", "security_profile": 4, "password_file": "PW"},
            "ocpp.security_profile",
        ),
        ({"url": "ws://x/ocpp", "password_file": "PW", "evse_id": 0}, "ocpp.evse_id"),
        ({"url": "ws://x/ocpp", "password_file": "PW", "station_id": "a b"}, "ocpp.station_id"),
        ({"url": "ws://x/ocpp", "password_file": "PW", "colour": "red"}, "ocpp.colour"),
        ({"url": "ws://x/ocpp", "password_file": "missing"}, "ocpp.password_file"),
        # Renewing a certificate is profile 3's (A03).
        ({"url": "ws://x/ocpp", "password_file": "PW", "renew_before": "30d"}, "ocpp.renew_before"),
    ],
)
def test_bad_ocpp_config_names_the_key(tmp_path: Path, ocpp: dict[str, Any], key: str) -> None:
    f = _files(tmp_path)
    resolved = {
        k: {"PW": f["password_file"], "CA": f["ca_file"]}.get(v, v) if isinstance(v, str) else v
        for k, v in ocpp.items()
    }
    assert _error(tmp_path, resolved).startswith(key)


def test_a_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    f = _files(tmp_path)
    Path(f["password_file"]).chmod(0o644)
    message = _error(tmp_path, {"url": "ws://x/ocpp", "password_file": f["password_file"]})
    assert message.startswith("ocpp.password_file")
