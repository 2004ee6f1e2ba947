"""The gateway's end of card-data protection, over real HTTP with a provisioned fleet.

Cards are read as a kiosk reads them: a shipped card profile replays through the real EMV
kernel (`CardAcquirer`) into a `ProtectionModule` loaded from a device key directory that
`provision_fleet` wrote; the gateway holds the fleet's gateway key directory."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import Engine

from gateway.card_data import CardVault
from gateway.processors import CardRef, ClearCard
from gateway.processors.port import Result
from gateway.processors.simulated import SimulatedProcessor
from gateway.server import EmbeddedGateway
from hardware.clock import ManualClock
from hardware.sim.card_script import load_named
from terminal.core.session import Card
from terminal.errors import KeyMaterialError
from terminal.money import Money
from terminal.protection.dukpt import InitialKeyId, derive_initial_key
from terminal.protection.keys import (
    BDK_FILE,
    ProvisionedFleet,
    load_device_keys,
    provision_fleet,
    read_key_file,
)
from terminal.protection.module import ProtectionModule
from terminal.protection.registers import FileRegisterStore, FutureKeys
from terminal.shell.acquire import CardAcquirer

TIMEOUT_S = 10
VISA_PAN = "4761739001010010"  # hardware/sim/cards/visa.card, tag 5A


class RecordingProcessor(SimulatedProcessor):
    """The simulated processor, remembering the cards it was asked to hold."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.cards: list[CardRef] = []

    def hold(self, *, key: str, payment_id: str, card: CardRef, amount: Money) -> Result:
        self.cards.append(card)
        return super().hold(key=key, payment_id=payment_id, card=card, amount=amount)


@dataclass
class Gateway:
    """The embedded gateway with the fleet's keys and a recording processor."""

    server: EmbeddedGateway
    processor: RecordingProcessor
    http: requests.Session

    def authorize(self, auth_id: str, card: Card | dict[str, Any], terminal: str) -> Any:
        body = {
            "authorization_id": auth_id,
            "terminal_id": terminal,
            "amount": {"minor": 5000, "currency": "EUR"},
            "card": card if isinstance(card, dict) else card_json(card),
        }
        return self.http.post(
            self.server.url + "/v1/authorizations",
            json=body,
            headers={"Idempotency-Key": f"{auth_id}:authorize"},
            timeout=TIMEOUT_S,
        )

    def holds(self) -> list[str]:
        return [m["authorization_id"] for m in self.server.ledger.all_movements()]


def card_json(card: Card) -> dict[str, Any]:
    """The card as the executor puts it in the authorization request."""
    return {
        "kind": card.kind.value,
        "token": card.token,
        "brand": card.brand,
        "last4": card.last4,
        "expiry": card.expiry,
        "payload": dict(card.payload),
    }


def tap(key_dir: Path, profile: str = "visa") -> Card:
    """Read a shipped card profile through the kernel and the device's protection module."""
    acquirer = CardAcquirer(
        protection=ProtectionModule.from_key_dir(key_dir),
        clock=ManualClock(),
        currency="EUR",
        amount_minor=5000,
        timezone="Europe/Berlin",
    )
    card = acquirer(load_named(profile).card())
    assert isinstance(card, Card), card
    return card


def refusal(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    code: str = response.json()["error"]["code"]
    return code


def with_payload(card: Card, **fields: str) -> dict[str, Any]:
    body = card_json(card)
    body["payload"] = {**body["payload"], **fields}
    return body


@pytest.fixture
def fleet(tmp_path: Path) -> ProvisionedFleet:
    return provision_fleet(tmp_path / "keys", fleet_id="fleet-a", devices=["kiosk-1", "kiosk-2"])


@pytest.fixture
def gateway(db_url: str, fleet: ProvisionedFleet) -> Iterator[Gateway]:
    server = EmbeddedGateway(db_url=db_url, key_dir=fleet.gateway_dir, processor=RecordingProcessor)
    processor = server.processor
    assert isinstance(processor, RecordingProcessor)
    server.up()
    http = requests.Session()
    try:
        yield Gateway(server=server, processor=processor, http=http)
    finally:
        http.close()
        server.close()


def test_the_processor_gets_the_decrypted_card_data(
    gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    card = tap(fleet.device_dirs["kiosk-1"])

    response = gateway.authorize("auth-card-0001", card, "KIOSK-1")

    assert response.json()["status"] == "approved"
    [held] = gateway.processor.cards
    assert held.clear is not None
    assert held.clear.pan == VISA_PAN
    assert held.clear.expiry == "4912"
    assert held.clear.track2 is not None
    assert held.clear.track2.startswith(VISA_PAN + "D4912")
    assert ("9F26", "1A2B3C4D5E6F7081") in held.clear.emv
    assert VISA_PAN not in repr(held)


@pytest.mark.parametrize(
    ("profile", "status"), [("declined", "declined"), ("partial", "approved"), ("amex", "approved")]
)
def test_the_simulated_processor_decides_by_the_decrypted_pan(
    gateway: Gateway, fleet: ProvisionedFleet, profile: str, status: str
) -> None:
    card = tap(fleet.device_dirs["kiosk-1"], profile)

    response = gateway.authorize("auth-card-0002", card, "KIOSK-1")

    assert response.json()["status"] == status
    [held] = gateway.processor.cards
    assert held.clear is not None
    assert held.clear.pan[-4:] == card.last4


def test_a_replayed_blob_is_refused(gateway: Gateway, fleet: ProvisionedFleet) -> None:
    card = tap(fleet.device_dirs["kiosk-1"])
    assert gateway.authorize("auth-first-0001", card, "KIOSK-1").json()["status"] == "approved"

    replay = gateway.authorize("auth-again-0001", card, "KIOSK-1")

    assert refusal(replay) == "card_data_invalid"
    assert "replayed" in replay.json()["error"]["message"]
    assert gateway.holds() == ["auth-first-0001"]
    assert len(gateway.processor.cards) == 1


def test_a_blob_replayed_on_another_gateway_process_is_refused(
    db_url: str, gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    """The seen KSNs are in the ledger database, not in memory: a restart remembers them."""
    card = tap(fleet.device_dirs["kiosk-1"])
    assert gateway.authorize("auth-first-0002", card, "KIOSK-1").status_code == 200
    gateway.server.close()
    restarted = EmbeddedGateway(db_url=db_url, key_dir=fleet.gateway_dir)
    restarted.up()
    try:
        replay = Gateway(
            server=restarted, processor=RecordingProcessor(restarted.engine), http=gateway.http
        )
        assert refusal(replay.authorize("auth-again-0002", card, "KIOSK-1")) == (
            "card_data_invalid"
        )
    finally:
        restarted.close()


def test_a_retry_after_a_processor_timeout_is_not_a_replay(
    gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    card = tap(fleet.device_dirs["kiosk-1"], "timeout")

    for _ in range(2):
        assert gateway.authorize("auth-slow-0001", card, "KIOSK-1").status_code == 504

    assert len(gateway.processor.cards) == 2


@pytest.mark.parametrize("field", ["ciphertext", "mac", "iv"])
def test_a_tampered_blob_is_refused(gateway: Gateway, fleet: ProvisionedFleet, field: str) -> None:
    card = tap(fleet.device_dirs["kiosk-1"])
    raw = bytearray(base64.b64decode(dict(card.payload)[field]))
    raw[-1] ^= 0x01
    tampered = with_payload(card, **{field: base64.b64encode(bytes(raw)).decode()})

    response = gateway.authorize("auth-tamper-01", tampered, "KIOSK-1")

    assert refusal(response) == "card_data_invalid"
    assert "authentication failed" in response.json()["error"]["message"]
    assert gateway.processor.cards == []
    # Only an authentic blob's KSN is recorded: the genuine one still goes through.
    assert gateway.authorize("auth-genuine-01", card, "KIOSK-1").json()["status"] == "approved"


def test_a_blob_moved_to_another_ksn_is_refused(gateway: Gateway, fleet: ProvisionedFleet) -> None:
    card = tap(fleet.device_dirs["kiosk-1"])
    ksn = dict(card.payload)["ksn"]
    moved = with_payload(card, ksn=ksn[:-1] + ("2" if ksn[-1] != "2" else "4"))

    assert refusal(gateway.authorize("auth-moved-0001", moved, "KIOSK-1")) == "card_data_invalid"


def test_a_token_that_is_not_the_pans_is_refused(gateway: Gateway, fleet: ProvisionedFleet) -> None:
    visa = tap(fleet.device_dirs["kiosk-1"])
    mastercard = tap(fleet.device_dirs["kiosk-1"], "mastercard")
    body = card_json(visa) | {"token": mastercard.token}

    response = gateway.authorize("auth-token-0001", body, "KIOSK-1")

    assert refusal(response) == "card_data_invalid"
    assert "token" in response.json()["error"]["message"]
    assert gateway.holds() == []


@pytest.mark.parametrize(("field", "value"), [("last4", "0002"), ("expiry", "3001")])
def test_a_last4_or_expiry_that_is_not_the_cards_is_refused(
    gateway: Gateway, fleet: ProvisionedFleet, field: str, value: str
) -> None:
    body = card_json(tap(fleet.device_dirs["kiosk-1"])) | {field: value}

    assert refusal(gateway.authorize("auth-claim-0001", body, "KIOSK-1")) == "card_data_invalid"
    assert gateway.processor.cards == []


def test_a_card_from_another_fleet_is_refused(
    tmp_path: Path, gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    other = provision_fleet(tmp_path / "other", fleet_id="fleet-b", devices=["kiosk-x"])
    card = tap(other.device_dirs["kiosk-x"])

    response = gateway.authorize("auth-other-0001", card, "KIOSK-X")

    assert refusal(response) == "card_data_invalid"
    assert "no fleet known here" in response.json()["error"]["message"]
    assert gateway.holds() == []


def _replaying(*values: bytes) -> Callable[[int], bytes]:
    queue = list(values)

    def random_bytes(n: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == n
        return value

    return random_bytes


def test_a_fleet_with_the_same_bdk_id_but_another_bdk_is_refused(
    tmp_path: Path, gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    impostor = provision_fleet(
        tmp_path / "impostor",
        fleet_id="impostor",
        devices=["kiosk-1"],
        random_bytes=_replaying(
            bytes(range(16)), bytes.fromhex(fleet.bdk_id), bytes(range(32, 64))
        ),
    )
    card = tap(impostor.device_dirs["kiosk-1"])

    response = gateway.authorize("auth-impostor-01", card, "KIOSK-1")

    assert refusal(response) == "card_data_invalid"
    assert "authentication failed" in response.json()["error"]["message"]


def test_a_device_the_fleet_does_not_list_is_refused(
    tmp_path: Path, gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    bdk = read_key_file(fleet.gateway_dir / BDK_FILE, lengths=(16,))
    ikid = InitialKeyId(bdk_id=bytes.fromhex(fleet.bdk_id), derivation_id=(99).to_bytes(4, "big"))
    registers = FileRegisterStore(tmp_path / "dukpt-registers")
    registers.save(FutureKeys.load_initial_key(derive_initial_key(bdk, ikid), ikid))
    rogue = ProtectionModule(
        token_key=load_device_keys(fleet.device_dirs["kiosk-1"]).token_key, registers=registers
    )
    acquirer = CardAcquirer(
        protection=rogue, clock=ManualClock(), currency="EUR", amount_minor=5000, timezone="UTC"
    )
    card = acquirer(load_named("visa").card())
    assert isinstance(card, Card)

    response = gateway.authorize("auth-rogue-0001", card, "KIOSK-99")

    assert refusal(response) == "card_data_invalid"
    assert "does not list" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"ciphertext": "AAAA"}, {"format": "ev-terminal/card-blob/v1"}],
    ids=["missing", "partial", "fields"],
)
def test_a_payment_card_without_a_valid_blob_is_refused(
    gateway: Gateway, fleet: ProvisionedFleet, payload: dict[str, str]
) -> None:
    body = card_json(tap(fleet.device_dirs["kiosk-1"])) | {"payload": payload}

    assert refusal(gateway.authorize("auth-blob-00001", body, "KIOSK-1")) == "card_data_invalid"
    assert gateway.processor.cards == []


def test_an_rfid_token_carries_no_blob(gateway: Gateway, fleet: ProvisionedFleet) -> None:
    rfid = tap(fleet.device_dirs["kiosk-1"], "rfid")
    visa = tap(fleet.device_dirs["kiosk-1"])

    approved = gateway.authorize("auth-rfid-00001", rfid, "KIOSK-1")
    smuggled = gateway.authorize(
        "auth-rfid-00002", card_json(rfid) | {"payload": dict(visa.payload)}, "KIOSK-1"
    )

    assert approved.json()["status"] == "approved"
    assert gateway.processor.cards[0].clear is None
    assert refusal(smuggled) == "card_data_invalid"


def test_refusals_and_reprs_carry_no_card_or_key_data(
    gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    card = tap(fleet.device_dirs["kiosk-1"])
    gateway.authorize("auth-leak-00001", card, "KIOSK-1")
    answers = [
        gateway.authorize("auth-leak-00002", card, "KIOSK-1").text,
        gateway.authorize("auth-leak-00003", card_json(card) | {"last4": "9999"}, "KIOSK-1").text,
    ]
    vault = CardVault.from_key_dirs(fleet.gateway_dir)
    clear = gateway.processor.cards[0].clear
    bdk = read_key_file(fleet.gateway_dir / BDK_FILE, lengths=(16,)).hex()
    for text in [*answers, repr(vault), repr(clear), repr(gateway.processor.cards[0])]:
        assert VISA_PAN not in text
        assert bdk.lower() not in text.lower()
    assert repr(ClearCard(pan=VISA_PAN, expiry="4912", pan_sequence=None, track2=None, emv=())) == (
        "ClearCard(<hidden>)"
    )


def test_a_vault_refuses_two_fleets_with_one_bdk_id(fleet: ProvisionedFleet) -> None:
    with pytest.raises(KeyMaterialError, match="share BDK ID"):
        CardVault.from_key_dirs(fleet.gateway_dir, fleet.gateway_dir)
    with pytest.raises(KeyMaterialError, match="at least one fleet"):
        CardVault.from_key_dirs()


def test_the_same_card_on_two_kiosks_has_one_token_and_one_history(
    gateway: Gateway, fleet: ProvisionedFleet
) -> None:
    first = tap(fleet.device_dirs["kiosk-1"])
    second = tap(fleet.device_dirs["kiosk-2"])
    other = tap(fleet.device_dirs["kiosk-2"], "mastercard")

    assert first.token == second.token
    assert dict(first.payload)["ksn"] != dict(second.payload)["ksn"]
    assert other.token != first.token
    for auth_id, card, terminal in [
        ("auth-two-00001", first, "KIOSK-1"),
        ("auth-two-00002", second, "KIOSK-2"),
        ("auth-two-00003", other, "KIOSK-2"),
    ]:
        assert gateway.authorize(auth_id, card, terminal).json()["status"] == "approved"

    history = gateway.server.ledger.card_history(first.token)

    assert [(row["id"], row["terminal_id"]) for row in history] == [
        ("auth-two-00001", "KIOSK-1"),
        ("auth-two-00002", "KIOSK-2"),
    ]
    assert [row["id"] for row in gateway.server.ledger.card_history(other.token)] == [
        "auth-two-00003"
    ]
