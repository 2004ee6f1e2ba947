"""Adyen's client-side encryption (CSE) of one card field, as the payment page's browser does
it with Adyen's library (`gateway/web/static/vendor/adyen-cse-0.1.19.nodom.min.js`,
`Encryption.prototype.encrypt`), for the simulator's phone, which has no browser.

The field and the generation time the page gave, as JSON, are sealed with AES-256-CCM (a
12-byte nonce, an 8-byte tag: SJCL's defaults in the library) under a fresh key; that key is
encrypted with the account's RSA public key (PKCS #1 v1.5, as the library's jsbn `RSAEncrypt`).
The result is ``adyenjs_0_1_19$`` + Base64(RSA(key)) + ``$`` + Base64(nonce ‖ ciphertext ‖ tag);
only Adyen, holding the private key, can open it.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

VERSION = "0_1_19"  # the vendored library's, which Adyen reads from the prefix


def seal(document: dict[str, str], public_key: str) -> str:
    """`document` (one field and its ``generationtime``) sealed under `public_key`, Adyen's
    "EXPONENT|MODULUS" in hex."""
    exponent, modulus = (int(part, 16) for part in public_key.split("|"))
    public = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    aes_key, nonce = os.urandom(32), os.urandom(12)
    sealed = AESCCM(aes_key, tag_length=8).encrypt(nonce, json.dumps(document).encode(), None)
    wrapped = public.encrypt(aes_key, padding.PKCS1v15())
    parts = (base64.b64encode(part).decode() for part in (wrapped, nonce + sealed))
    return f"adyenjs_{VERSION}$" + "$".join(parts)
