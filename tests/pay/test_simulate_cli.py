"""`ev-terminal simulate` paying by phone through a processors file: the command, run as a
process, routes Lightning to an LNbits wallet (FakeWallet) with `--processors`, and the
driver's wallet (`--lightning-wallet` and its key file) pays the invoice the `pay qr
lightning` step asks for; the session is charged, stopped from the phone and captured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pay.conftest import lightning_routing, phone_session
from tests.processors.stack import Lnbits

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_simulate_pays_the_qr_with_lightning_through_a_processors_file(
    lnbits: Lnbits, tmp_path: Path
) -> None:
    routing = lightning_routing(tmp_path, lnbits)
    driver = lnbits.wallet("cli-driver", sats=1_000_000)
    (tmp_path / "driver.key").write_text(driver.admin_key + "\n")
    config = (REPO / "deploy" / "terminal.toml").read_text()
    (tmp_path / "terminal.toml").write_text(
        config.replace("pay_by_phone = false", "pay_by_phone = true", 1)
    )
    (tmp_path / "script.txt").write_text(phone_session("lightning"))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ev-terminal"),
            "simulate",
            "--config",
            str(tmp_path / "terminal.toml"),
            "--script",
            str(tmp_path / "script.txt"),
            "--data",
            str(tmp_path / "data"),
            "--processors",
            str(routing.file),
            "--lightning-wallet",
            lnbits.url,
            "--lightning-wallet-key",
            str(tmp_path / "driver.key"),
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (result["settlement"], result["ended"]) == ("captured", "remote")
    assert result["amount_captured"] == result["amount_priced"] > 0
    assert result["card_brand"] == "Lightning"
