"""Fixtures for the card-data protection tests: a provisioned simulated fleet on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.protection.dukpt import KeyType
from terminal.protection.keys import ProvisionedFleet, provision_fleet


@pytest.fixture
def fleet(tmp_path: Path) -> ProvisionedFleet:
    """An AES-128 fleet of two kiosks, keys written as the provision command writes them."""
    return provision_fleet(tmp_path / "keys", fleet_id="test-fleet", devices=["kiosk-1", "kiosk-2"])


@pytest.fixture
def fleet256(tmp_path: Path) -> ProvisionedFleet:
    """An AES-256 fleet of one kiosk."""
    return provision_fleet(
        tmp_path / "keys256", fleet_id="fleet-256", devices=["kiosk-a"], key_type=KeyType.AES256
    )
