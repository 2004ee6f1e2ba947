"""An invoice's PDF, made with fpdf2 (pure Python) from the content fixed when its number was
given (`gateway.web.invoices.compose`): every text on it is already in the invoice's language,
so making it again gives the same words and figures.

Text is set in Helvetica, one of the PDF's standard fonts (nothing embedded; its Latin-1 covers
the four languages of the pages and most names), unless a text needs more: then in DejaVu Sans
(Debian's fonts-dejavu-core; embedded, subset), which covers the Latin, Greek and Cyrillic
names a buyer may type. Embedding costs about 25 times the time (parsing the font file: about
450 ms against 16 ms on this machine, `python -m bench.bench_invoices`). The PDF's creation
date is the issue time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

FONTS = Path("/usr/share/fonts/truetype/dejavu")
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
MEDIA_TYPE = "application/pdf"

# A4 in mm (fpdf2's unit); the amount column's width.
WIDTH, MARGIN, AMOUNT = 210, 18, 45


def render(document: dict[str, Any], fonts: Path = FONTS) -> bytes:
    """The PDF of a stored invoice document (see `gateway.web.invoices.compose`)."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=MARGIN)
    pdf.set_creation_date(datetime.fromisoformat(document["issued_at"]))
    pdf.set_title(document["heading"])
    pdf.set_lang(document["language"])
    if latin1(document):
        face = "Helvetica"
    else:
        face = "Body"
        pdf.add_font(face, "", str(fonts / REGULAR))
        pdf.add_font(face, "B", str(fonts / BOLD))
    pdf.add_page()
    text = WIDTH - 2 * MARGIN

    pdf.set_font(face, "B", 18)
    pdf.cell(text, 10, document["heading"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(face, "", 10)
    for label, value in document["facts"]:
        pair(pdf, label, value, text)
    pdf.ln(4)
    for label, lines in (
        (document["seller_label"], document["seller"]),
        (document["buyer_label"], document["buyer"]),
    ):
        if not lines:
            continue
        pdf.set_font(face, "B", 11)
        pdf.cell(text, 7, label, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(face, "", 10)
        for line in lines:
            pdf.multi_cell(text, 5, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.ln(2)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(MARGIN, pdf.get_y(), WIDTH - MARGIN, pdf.get_y())
    pdf.ln(1)
    for label, value in document["rows"]:
        pair(pdf, label, value, text)
    pdf.set_draw_color(0, 0, 0)
    pdf.line(MARGIN, pdf.get_y() + 1, WIDTH - MARGIN, pdf.get_y() + 1)
    pdf.ln(2)
    pdf.set_font(face, "B", 13)
    total_label, total_value = document["total"]
    pair(pdf, total_label, total_value, text, height=8)
    pdf.set_font(face, "", 9)
    pdf.ln(4)
    for note in document["notes"]:
        pdf.multi_cell(text, 5, note, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def latin1(document: dict[str, Any]) -> bool:
    """Whether every text of the document is in Latin-1 (the standard fonts' encoding here)."""

    def texts(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [t for item in value for t in texts(item)]
        return []

    try:
        for text in texts(list(document.values())):
            text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def pair(pdf: FPDF, label: str, value: str, width: float, height: float = 6) -> None:
    """A labelled value on one row: the label wraps in its column, the value keeps right."""
    top = pdf.get_y()
    pdf.multi_cell(width - AMOUNT, height, label, new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y()
    pdf.set_xy(MARGIN + width - AMOUNT, top)
    pdf.cell(AMOUNT, height, value, align="R")
    pdf.set_xy(MARGIN, bottom)
