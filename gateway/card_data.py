"""The card vault: the gateway's end of card-data protection (docs/architecture.md, "Card data").

For a payment card the terminal sends a token, brand, last four digits, expiry and the
DUKPT-encrypted blob of the card data (`terminal.protection.blob`). `CardVault.open` turns
that into the clear data the processor adapter needs, or refuses it:

1. the blob must be there and well-formed (`EncryptedBlob.from_json`);
2. its BDK ID (the leftmost 32 bits of the KSN, `blob_bdk_id`) names a fleet whose keys the
   gateway holds, and its Initial Key ID one of that fleet's provisioned devices;
3. it must authenticate and decrypt under that fleet's BDK (`decrypt_blob`, ANSI X9.24-3-2017
   host derivation; the CMAC is checked before anything is decrypted);
4. its KSN must not have been used by another authorization: DUKPT never repeats a KSN, so a
   KSN seen twice is a replayed blob (the ledger keeps every KSN it accepted);
5. what the terminal claimed must agree with what it encrypted: the token is the fleet token
   key's HMAC of the decrypted PAN, and the last four digits and expiry are the PAN's.

Any refusal is a `ProtectedDataError` whose message says what is wrong and carries no card or
key data; the API answers it with 400 ``card_data_invalid``, never an approval. An
identification token (RFID UID) carries no card data, and a blob sent with one is refused.

The clear data lives in the returned `ClearCard`, in memory, for the one processor call; the
vault keeps no reference to it and nothing here logs it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.processors import CardRef, ClearCard
from gateway.processors.methods import PAYMENT
from terminal.errors import CardError, KeyMaterialError, ProtectedDataError
from terminal.protection.blob import EncryptedBlob
from terminal.protection.host import blob_bdk_id, decrypt_blob
from terminal.protection.keys import GatewayKeys, load_gateway_keys
from terminal.protection.token import card_token

log = logging.getLogger("ev_gateway.card_data")


# Records that the KSN is now used by this authorization; False if another one used it.
ClaimKsn = Callable[[str], bool]


class CardVault:
    """Verifies and decrypts the card data of payment cards, for one or more fleets.

    Built once by the composition root from the gateway key directories `provision_fleet`
    wrote (``keys/gateway``); the repr shows fleet ids only.
    """

    __slots__ = ("_fleets",)

    def __init__(self, fleets: Iterable[GatewayKeys]) -> None:
        by_bdk: dict[str, GatewayKeys] = {}
        for keys in fleets:
            bdk_id = keys.bdk_id.hex().upper()
            if bdk_id in by_bdk:
                raise KeyMaterialError(
                    f"fleets {by_bdk[bdk_id].fleet_id!r} and {keys.fleet_id!r} share BDK ID "
                    f"{bdk_id}"
                )
            by_bdk[bdk_id] = keys
        if not by_bdk:
            raise KeyMaterialError("the card vault needs the keys of at least one fleet")
        self._fleets = by_bdk

    @classmethod
    def from_key_dirs(cls, *key_dirs: Path) -> CardVault:
        """Load each gateway key directory (`load_gateway_keys`)."""
        return cls(load_gateway_keys(key_dir) for key_dir in key_dirs)

    def __repr__(self) -> str:
        fleets = ", ".join(sorted(keys.fleet_id for keys in self._fleets.values()))
        return f"CardVault(fleets=[{fleets}], keys=<hidden>)"

    def reading_key(self, device: str) -> str:
        """The device's OCMF signing public key (hex DER) as its fleet's `provision` recorded
        it; "" when no fleet here has one for it."""
        for keys in self._fleets.values():
            if device in keys.ocmf_keys:
                return keys.ocmf_keys[device]
        return ""

    def open(self, card: CardRef, *, claim_ksn: ClaimKsn) -> ClearCard | None:
        """The clear data of a payment card (None for an identification token), or
        `ProtectedDataError`. `claim_ksn` is called once the blob has authenticated, so only
        KSNs the fleet's devices really used are ever recorded."""
        if card.kind != PAYMENT:
            if card.payload:
                raise ProtectedDataError("an identification token carries no card data")
            return None
        if not card.payload:
            raise ProtectedDataError("card data blob: missing")
        blob = EncryptedBlob.from_json(card.payload)
        keys = self._fleets.get(blob_bdk_id(blob))
        if keys is None:
            raise ProtectedDataError("card data blob: made under a BDK of no fleet known here")
        if blob.ksn.initial_key_id not in keys.devices.values():
            raise ProtectedDataError("card data blob: made by a device the fleet does not list")
        try:
            data = decrypt_blob(keys.bdk, blob)
        except KeyMaterialError as exc:
            # The blob names a key type the fleet's BDK cannot give: the blob is at fault.
            raise ProtectedDataError(str(exc)) from None
        ksn = blob.ksn.hex()
        if not claim_ksn(ksn):
            log.warning("event=card_data_replayed fleet=%s ksn=%s", keys.fleet_id, ksn)
            raise ProtectedDataError("card data blob: KSN already used (replayed)")
        pan = data["pan"]
        try:
            expected = card_token(keys.token_key, pan)
        except CardError:
            raise ProtectedDataError("card data blob: the PAN is not 12 to 19 digits") from None
        if not hmac.compare_digest(expected.encode(), card.token.encode()):
            raise ProtectedDataError("card data blob: does not match the card token sent")
        if pan[-4:] != card.last4:
            raise ProtectedDataError("card data blob: does not match the last four digits sent")
        if card.expiry is not None and data["expiry"] != card.expiry:
            raise ProtectedDataError("card data blob: does not match the expiry sent")
        return ClearCard(
            pan=pan,
            expiry=data["expiry"],
            pan_sequence=data["pan_sequence"],
            track2=data["track2"],
            emv=tuple((tag, value) for tag, value in data["emv"]),
        )
