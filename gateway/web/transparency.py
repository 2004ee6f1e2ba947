"""The signed meter readings of one session in the file the S.A.F.E. transparency software
("Transparenzsoftware", S.A.F.E. e.V.) opens, so a driver can check what they were billed for
under German calibration law (MessEV/MessEG; PTB-A 50.7).

The file is the software's XML input: a `values` element with one `value` per reading, whose
`signedData` (format "OCMF", encoding "plain") is the OCMF string exactly as the meter's
signer wrote it and whose `publicKey` (encoding "plain": hex DER SubjectPublicKeyInfo) is the
station's reading key from the registry (left out when none is registered; the driver then
types the key printed on the charger). `transactionId` and `context` pair the readings of one
session: "Transaction.Begin" for OCMF reading reason B, "Transaction.End" for E. Intermediate
readings (C) are not part of the begin/end pair the software checks, and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree.ElementTree import Element, SubElement, tostring

MEDIA_TYPE = "application/xml"
CONTEXTS = {"begin": "Transaction.Begin", "end": "Transaction.End"}


def transparency_xml(readings: Sequence[tuple[str, str]], public_key_hex: str) -> bytes:
    """The XML of `readings` ((kind, OCMF string) in the order they arrived): the begin and
    end readings of transaction 1, with the station's key (hex DER) when there is one."""
    root = Element("values")
    for kind, text in readings:
        context = CONTEXTS.get(kind)
        if context is None:
            continue
        value = SubElement(root, "value", transactionId="1", context=context)
        signed = SubElement(value, "signedData", format="OCMF", encoding="plain")
        signed.text = text
        if public_key_hex:
            key = SubElement(value, "publicKey", encoding="plain")
            key.text = public_key_hex
    return bytes(tostring(root, encoding="utf-8", xml_declaration=True))
