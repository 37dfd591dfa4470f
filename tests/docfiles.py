"""Documents for the upload tests: an article with a made-up name, and PDF and Word files made
on the spot (reportlab, pypdf and python-docx)."""

from __future__ import annotations

import io
from datetime import datetime

# A made-up name that no seed mentions: only the uploaded article can answer for it, and once it
# is gone the unknown-name rule refuses.
ARTICLE = (
    "Quorvath Belisande opens the Tidewater Lantern Museum\n"
    "Published: 2024-03-02\n"
    "Quorvath Belisande founded the Tidewater Lantern Museum in the harbour town of Essmere.\n"
    "The museum keeps four hundred ship lanterns.\n"
)
QUESTION = "Who founded the Tidewater Lantern Museum?"


def make_pdf(
    pages: list[list[str]], *, title: str | None = None, created: str | None = None
) -> bytes:
    """A PDF with a text layer: each page draws its lines; ``created`` is a PDF date string."""
    from pypdf import PdfReader, PdfWriter
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, invariant=True)
    for lines in pages:
        y = 800.0
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(buf.getvalue())))
    meta: dict[str, str] = {}
    if title is not None:
        meta["/Title"] = title
    if created is not None:
        meta["/CreationDate"] = created
    writer.add_metadata(meta)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_scanned_pdf() -> bytes:
    """A PDF whose only page is a picture: no text layer, like a scan."""
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, invariant=True)
    pdf.rect(72, 400, 300, 300, fill=1)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def make_docx(
    paragraphs: list[str],
    *,
    title: str | None = None,
    created: datetime | None = None,
    table: list[list[str]] | None = None,
) -> bytes:
    """A Word document with the paragraphs (and a table after the first one, if given)."""
    import docx

    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    if created is not None:
        document.core_properties.created = created
    for i, text in enumerate(paragraphs):
        document.add_paragraph(text)
        if i == 0 and table:
            grid = document.add_table(rows=len(table), cols=len(table[0]))
            for r, row in enumerate(table):
                for c, cell in enumerate(row):
                    grid.cell(r, c).text = cell
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()
