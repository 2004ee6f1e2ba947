"""QR codes on the payment pages (a Lightning invoice), drawn on the server as inline SVG so
the page needs no script and no image request (its CSP allows neither)."""

from __future__ import annotations

from functools import lru_cache

import qrcode
import qrcode.constants
import qrcode.image.svg


@lru_cache(maxsize=64)
def qr_svg(text: str) -> str:
    """`text` as a QR code (error correction level M), an inline `<svg>` element."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(text)
    code.make(fit=True)
    image = code.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    document = str(image.to_string(encoding="unicode"))
    return document[document.index("<svg") :]  # without the XML declaration


def lightning_uri(bolt11: str) -> str:
    """The URI a wallet opens (BOLT 11 invoices are bech32, case-insensitive; upper case fits
    the QR code's alphanumeric mode, a smaller code). `lightning:` per BIP 21's convention."""
    return "lightning:" + bolt11.upper()
