"""The gateway says how long the fleet's CRL has left, and warns well before it lapses (a
lapsed CRL refuses every terminal). CRLs are signed by a real fleet CA on disk."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.tls import CRL_WARNING_MARGIN, Revocations, crl_expiry_check
from terminal.protection import certs

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _write_fleet(tmp_path: Path, *, crl_days: int) -> tuple[Path, Path]:
    ca = certs.issue_ca("test", now=NOW - timedelta(days=100))
    ca_file, crl_file = tmp_path / "ca.pem", tmp_path / "crl.pem"
    certs.write_cert(ca_file, ca[0])
    crl_file.write_bytes(certs.crl(ca, [], now=NOW, days=crl_days))
    return ca_file, crl_file


def _revocations(tmp_path: Path, *, crl_days: int, at: datetime = NOW) -> Revocations:
    ca_file, crl_file = _write_fleet(tmp_path, crl_days=crl_days)
    return Revocations(crl_file, ca_file, lambda: at)


def test_time_left_is_the_distance_to_next_update(tmp_path: Path) -> None:
    revocations = _revocations(tmp_path, crl_days=30)

    assert revocations.time_left() == timedelta(days=30)


def test_a_fresh_crl_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ev_gateway.tls")

    left = crl_expiry_check(_revocations(tmp_path, crl_days=30))

    assert left == timedelta(days=30)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_crl_within_the_margin_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revocations = _revocations(tmp_path, crl_days=30, at=NOW + timedelta(days=25))

    left = crl_expiry_check(revocations)

    assert left == timedelta(days=5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "event=crl_expiring hours_left=120" in warnings[0]
    assert "renew_crl" in warnings[0]


def test_the_margin_is_configurable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    revocations = _revocations(tmp_path, crl_days=30, at=NOW + timedelta(days=10))

    crl_expiry_check(revocations)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    crl_expiry_check(revocations, margin=timedelta(days=21))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_the_default_margin_is_a_week() -> None:
    assert timedelta(days=7) == CRL_WARNING_MARGIN


def test_a_lapsed_crl_is_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    revocations = _revocations(tmp_path, crl_days=30, at=NOW + timedelta(days=31))

    left = crl_expiry_check(revocations)

    assert left == timedelta(days=-1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"event=crl_expired hours_ago=24 file={revocations.crl_file}"]


def test_a_crl_signed_by_another_ca_is_unusable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file, crl_file = _write_fleet(tmp_path, crl_days=30)
    foreign = certs.issue_ca("foreign", now=NOW)
    crl_file.write_bytes(certs.crl(foreign, [], now=NOW))

    left = crl_expiry_check(Revocations(crl_file, ca_file, lambda: NOW))

    assert left == timedelta(0)
    assert "event=crl_unusable" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.ERROR


def test_a_missing_crl_file_is_unusable(tmp_path: Path) -> None:
    ca_file, crl_file = _write_fleet(tmp_path, crl_days=30)
    crl_file.unlink()

    assert crl_expiry_check(Revocations(crl_file, ca_file, lambda: NOW)) == timedelta(0)


def test_no_crl_configured_has_no_expiry(tmp_path: Path) -> None:
    ca_file, _ = _write_fleet(tmp_path, crl_days=30)

    assert crl_expiry_check(Revocations(None, ca_file, lambda: NOW)) is None


def test_a_renewed_crl_is_seen_without_a_restart(tmp_path: Path) -> None:
    ca = certs.issue_ca("test", now=NOW - timedelta(days=100))
    ca_file, crl_file = tmp_path / "ca.pem", tmp_path / "crl.pem"
    certs.write_cert(ca_file, ca[0])
    crl_file.write_bytes(certs.crl(ca, [], now=NOW - timedelta(days=28), days=30))
    revocations = Revocations(crl_file, ca_file, lambda: NOW)
    assert revocations.time_left() == timedelta(days=2)

    # One byte longer: the reload is keyed on mtime and size, and mtime may not tick here.
    crl_file.write_bytes(certs.crl(ca, [], now=NOW, days=30) + b"\n")

    assert revocations.time_left() == timedelta(days=30)


def test_a_serving_gateway_repeats_the_warning_hourly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file, crl_file = _write_fleet(tmp_path, crl_days=30)
    now = [NOW + timedelta(days=25)]
    revocations = Revocations(crl_file, ca_file, lambda: now[0])

    def warnings() -> int:
        return sum(1 for r in caplog.records if "event=crl_expiring" in r.getMessage())

    assert revocations.refusal(1) is None
    assert warnings() == 1
    now[0] += timedelta(minutes=59)
    assert revocations.refusal(1) is None
    assert warnings() == 1
    now[0] += timedelta(minutes=1)
    assert revocations.refusal(1) is None
    assert warnings() == 2


def test_a_serving_gateway_is_quiet_about_a_fresh_crl(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revocations = _revocations(tmp_path, crl_days=30)

    for _ in range(3):
        assert revocations.refusal(1) is None

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
