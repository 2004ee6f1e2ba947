"""OCMF, the Open Charge Metering Format (S.A.F.E. e.V., OCMF 1.0 and later): signed meter
readings as ``OCMF|{payload}|{signature}``.

The payload is a JSON object of header fields (FV format version, GI/GS/GV gateway id, serial
and version, PG pagination "T<n>", MV/MM/MS meter vendor/model/serial, IS/IL/IF/IT/ID the
user's identification, CT/CI the charge point, TT tariff text) and `RD`, the readings (TM
time "YYYY-MM-DDThh:mm:ss,fff+zzzz S", TX B/C/E..., RV value, RI OBIS id, RU unit, RT current
type, EF error flags, ST meter status). The signature section names the algorithm (SA, default
ECDSA-secp256r1-SHA256), the encoding (SE, default hex) and the data (SD, DER-encoded ECDSA).
The signature is over the payload section's bytes exactly as they appear in the string.

Pure: building, signing with a key the caller holds, and verifying; no files, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PREFIX = "OCMF|"
SIGNATURE_ALGORITHM = "ECDSA-secp256r1-SHA256"
OBIS_IMPORT = "1-b:1.8.0"  # active energy import, total (OBIS, IEC 62056-61)

# OCMF's curve names -> cryptography's curves (OpenSSL). secp192k1 is verified in pure Python.
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
    "secp256k1": ec.SECP256K1,
    "secp192r1": ec.SECP192R1,
    "brainpool256r1": ec.BrainpoolP256R1,
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpool384r1": ec.BrainpoolP384R1,
}
_HASHES = {"SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


class OcmfError(ValueError):
    """Not an OCMF string, or a malformed part of one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One signed reading's facts. `kind` is OCMF's reading reason (TX): "B" begin, "C"
    charging (an intermediate reading on request), "E" end."""

    kind: str
    register_wh: int
    at: datetime
    pagination: int
    gateway_id: str  # GI
    gateway_serial: str  # GS: the terminal id
    gateway_version: str  # GV
    meter_vendor: str  # MV
    meter_model: str  # MM
    meter_serial: str  # MS
    identification: str  # ID: the card token (a keyed hash), never card data
    charge_point: str  # CI: the charge point id (CT "EVSEID")
    tariff_text: str  # TT


def ocmf_time(at: datetime) -> str:
    """OCMF's TM: local time with milliseconds, comma, offset and the time status "S"
    (synchronised)."""
    at = at.astimezone(UTC) if at.tzinfo is None else at
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S") + f",{at.microsecond // 1000:03d}"
    return stamp + at.strftime("%z") + " S"


def payload(reading: Reading) -> dict[str, Any]:
    """The payload object, in the field order of the OCMF specification."""
    if reading.kind not in ("B", "C", "E"):
        raise ValueError(f"reading kind {reading.kind!r}")
    return {
        "FV": "1.0",
        "GI": reading.gateway_id,
        "GS": reading.gateway_serial,
        "GV": reading.gateway_version,
        "PG": f"T{reading.pagination}",
        "MV": reading.meter_vendor,
        "MM": reading.meter_model,
        "MS": reading.meter_serial,
        "IS": True,
        "IL": "VERIFIED",  # the gateway authorized the token before energy flowed
        "IF": [],
        "IT": "CENTRAL",  # a centrally known identifier: the fleet's card token
        "ID": reading.identification,
        "CT": "EVSEID",
        "CI": reading.charge_point,
        "TT": reading.tariff_text[:250],
        "RD": [
            {
                "TM": ocmf_time(reading.at),
                "TX": reading.kind,
                # kWh with the register's full resolution (3 decimals = 1 Wh), exact.
                "RV": Decimal(reading.register_wh) / 1000,
                "RI": OBIS_IMPORT,
                "RU": "kWh",
                "RT": "AC",
                "EF": "",
                "ST": "G",
            }
        ],
    }


def encode_payload(data: dict[str, Any]) -> str:
    """Compact JSON. Reading values (RV, Decimal kWh) are written as exact decimal numbers
    with three places (1 Wh), never through a float."""
    readings = data.get("RD", [])
    marked = {**data, "RD": [{**r, "RV": f"\x00{i}"} for i, r in enumerate(readings)]}
    text = json.dumps(marked, separators=(",", ":"), ensure_ascii=False)
    for i, r in enumerate(readings):
        text = text.replace(json.dumps(f"\x00{i}"), f"{Decimal(r['RV']):.3f}", 1)
    return text


def sign(data: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """The OCMF string of `data` signed with a P-256 key (ECDSA-secp256r1-SHA256, hex DER)."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("OCMF readings are signed with a P-256 key")
    body = encode_payload(data)
    signature = key.sign(body.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    section = json.dumps(
        {"SA": SIGNATURE_ALGORITHM, "SD": signature.hex().upper()}, separators=(",", ":")
    )
    return f"{PREFIX}{body}|{section}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    payload_text: str
    payload: dict[str, Any]
    signature: dict[str, Any]


def parse(text: str) -> Parsed:
    """Split and decode an OCMF string (surrounding whitespace is ignored)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise OcmfError("not an OCMF string")
    parts = text.split("|")
    if len(parts) != 3:
        raise OcmfError("an OCMF string has three sections")
    try:
        data = json.loads(parts[1], parse_float=Decimal)
        signature = json.loads(parts[2])
    except json.JSONDecodeError as exc:
        raise OcmfError(f"malformed JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(signature, dict):
        raise OcmfError("payload and signature must be JSON objects")
    if not isinstance(signature.get("SD"), str):
        raise OcmfError("signature data (SD) missing")
    return Parsed(payload_text=parts[1], payload=data, signature=signature)


def load_public_key(text: str) -> bytes:
    """A DER public key given as hex (spaces allowed) or base64."""
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        pass
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError:
        raise OcmfError("public key is neither hex nor base64") from None


def verify(text: str, public_key_der: bytes) -> bool:
    """Whether the OCMF string's signature is valid for the DER (SubjectPublicKeyInfo) key and
    the curve its SA names. Malformed input raises OcmfError."""
    parsed = parse(text)
    algorithm = str(parsed.signature.get("SA", SIGNATURE_ALGORITHM))
    parts = algorithm.split("-")
    if len(parts) != 3 or parts[0] != "ECDSA" or parts[2] not in _HASHES:
        raise OcmfError(f"unsupported signature algorithm {algorithm!r}")
    curve_name, hash_name = parts[1], parts[2]
    encoding = parsed.signature.get("SE", "hex")
    sd = parsed.signature["SD"]
    try:
        signature = bytes.fromhex(sd) if encoding == "hex" else base64.b64decode(sd)
    except ValueError:
        raise OcmfError("signature data is not in its encoding") from None
    message = parsed.payload_text.encode("utf-8")
    if curve_name == "secp192k1":
        return _verify_secp192k1(public_key_der, signature, message, hash_name)
    try:
        key = serialization.load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm):
        raise OcmfError("unreadable public key") from None
    curve = _CURVES.get(curve_name)
    if not isinstance(key, ec.EllipticCurvePublicKey) or curve is None:
        raise OcmfError(f"unsupported key or curve {curve_name!r}")
    if not isinstance(key.curve, curve):
        raise OcmfError(f"the key is not on {curve_name}")
    try:
        key.verify(signature, message, ec.ECDSA(_HASHES[hash_name]()))
    except InvalidSignature:
        return False
    return True


# -- secp192k1 (SEC 2 v2.0, 2.2.1): OpenSSL does not offer it; verification is public-key math.
_P = 0xFFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFE_FFFFEE37
_N = 0xFFFFFFFF_FFFFFFFF_FFFFFFFE_26F2FC17_0F69466A_74DEFD8D
_G = (
    0xDB4FF10E_C057E9AE_26B07D02_80B7F434_1DA5D1B1_EAE06C7D,
    0x9B2F2F6D_9C5628A7_844163D0_15BE8634_4082AA88_D95E2F9D,
)
_SECP192K1_SPKI_PREFIX = bytes.fromhex("3046301006072a8648ce3d020106052b8104001f033200")

Point = tuple[int, int] | None


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % _P == 0:
        return None
    if a == b:
        slope = 3 * a[0] * a[0] * pow(2 * a[1], -1, _P)  # curve y^2 = x^3 + 3: a = 0
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, _P)
    x = (slope * slope - a[0] - b[0]) % _P
    return x, (slope * (a[0] - x) - a[1]) % _P


def _mul(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _verify_secp192k1(der: bytes, signature: bytes, message: bytes, hash_name: str) -> bool:
    if not der.startswith(_SECP192K1_SPKI_PREFIX) or len(der) != len(_SECP192K1_SPKI_PREFIX) + 49:
        raise OcmfError("not a secp192k1 public key")
    raw = der[len(_SECP192K1_SPKI_PREFIX) :]
    if raw[0] != 0x04:
        raise OcmfError("compressed points are not supported")
    q = (int.from_bytes(raw[1:25], "big"), int.from_bytes(raw[25:], "big"))
    if (q[1] * q[1] - q[0] ** 3 - 3) % _P:
        raise OcmfError("the public key is not on secp192k1")
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    if not (0 < r < _N and 0 < s < _N):
        return False
    digest = hashlib.new(hash_name.lower(), message).digest()
    e = int.from_bytes(digest, "big") >> max(0, len(digest) * 8 - _N.bit_length())
    w = pow(s, -1, _N)
    point = _add(_mul(e * w % _N, _G), _mul(r * w % _N, q))
    return point is not None and point[0] % _N == r
