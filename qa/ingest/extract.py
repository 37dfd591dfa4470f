"""What a document file holds: its format, checked against its name, and its indexable text.

Plain text, Markdown and HTML files are their own text: offsets index into the file's bytes
decoded as UTF-8. PDF and Word (.docx) files are not text; their text is extracted here once
per content hash and kept with the index, and offsets index into that extracted text.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from qa.errors import DocumentContentError, UnsupportedDocumentError

log = logging.getLogger(__name__)

Format = Literal["text", "pdf", "docx"]

#: Suffixes seedqa reads, and the format each one promises.
FORMAT_FOR_SUFFIX: dict[str, Format] = {
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
    ".html": "text",
    ".htm": "text",
    ".pdf": "pdf",
    ".docx": "docx",
}
EXTRACTED_FORMATS: frozenset[Format] = frozenset({"pdf", "docx"})
_DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
#: Declared content types and the format each one names; ``None``: any format (decided by name).
_FORMAT_FOR_TYPE: dict[str, Format | None] = {
    "application/pdf": "pdf",
    _DOCX_TYPE: "docx",
    "application/octet-stream": None,
}
_DESCRIBE: dict[Format, str] = {"text": "text", "pdf": "a PDF document", "docx": "a Word document"}
# Formats people send by mistake, recognised by their first bytes so the message can name them.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an old binary Office document (.doc/.xls); save it as .docx"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a ZIP archive"),
)


@dataclass(frozen=True, slots=True)
class Extracted:
    """A document's indexable text and the metadata its file records (``None`` when absent)."""

    text: str
    title: str | None = None
    date: str | None = None


def format_for(source: str) -> Format:
    """The format a document name promises, or :class:`UnsupportedDocumentError`."""
    dot = source.rfind(".")
    suffix = source[dot:].lower() if dot > source.rfind("/") else ""
    fmt = FORMAT_FOR_SUFFIX.get(suffix)
    if fmt is None:
        allowed = ", ".join(sorted(FORMAT_FOR_SUFFIX))
        raise UnsupportedDocumentError(
            f"'{source}' has suffix {suffix or '(none)'!r}, which seedqa does not read; "
            f"allowed: {allowed}"
        )
    return fmt


def check_content_type(source: str, content_type: str | None) -> None:
    """Refuse a declared ``Content-Type`` that contradicts the name's format."""
    if not content_type:
        return
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    fmt = format_for(source)
    if mime.startswith("text/"):
        declared: Format | None = "text"
        charset = params.strip().lower().removeprefix("charset=").strip('"')
        if params.strip().lower().startswith("charset=") and charset not in ("utf-8", "utf8"):
            raise UnsupportedDocumentError(
                f"'{source}' is declared as {charset!r} text; seedqa reads UTF-8 only"
            )
    elif mime in _FORMAT_FOR_TYPE:
        declared = _FORMAT_FOR_TYPE[mime]
    else:
        raise UnsupportedDocumentError(
            f"Content-Type {mime!r} of '{source}' is not one seedqa reads "
            f"(text/*, application/pdf, {_DOCX_TYPE})"
        )
    if declared is not None and declared != fmt:
        raise UnsupportedDocumentError(
            f"Content-Type {mime!r} says {_DESCRIBE[declared]}, but the name '{source}' "
            f"says {_DESCRIBE[fmt]}"
        )


def sniff(data: bytes) -> Format | str:
    """The format ``data`` actually is: a :data:`Format`, or a description of something else."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return "docx"
        except zipfile.BadZipFile:
            return "a damaged ZIP archive"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    return "text"


def _check_format(source: str, data: bytes, fmt: Format) -> None:
    if not data:
        raise DocumentContentError(f"'{source}' is empty (0 bytes)")
    actual = sniff(data)
    if actual == fmt:
        return
    what = _DESCRIBE.get(actual, actual)  # type: ignore[call-overload]
    raise UnsupportedDocumentError(
        f"'{source}' is named as {_DESCRIBE[fmt]} but its content is {what}"
    )


def extract(source: str, data: bytes) -> Extracted:
    """The text and metadata of document ``source`` whose file holds ``data``.

    Raises :class:`UnsupportedDocumentError` when the content is not the format the name says,
    and :class:`DocumentContentError` when it is but holds no usable text.
    """
    fmt = format_for(source)
    _check_format(source, data, fmt)
    if fmt == "pdf":
        result = _pdf(source, data)
    elif fmt == "docx":
        result = _docx(source, data)
    else:
        result = Extracted(_decode_text(source, data))
    if not result.text.strip().lstrip("\ufeff").strip():
        if fmt == "pdf":
            raise DocumentContentError(
                f"'{source}' has no text layer (a scanned PDF?); run OCR on it first"
            )
        raise DocumentContentError(f"'{source}' has no text")
    return result


def _decode_text(source: str, data: bytes) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DocumentContentError(f"'{source}' looks binary (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentContentError(
            f"'{source}' is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _clean(text: str) -> str:
    """Extracted text with NULs and trailing spaces gone; offsets refer to this result."""
    lines = [line.rstrip() for line in text.replace("\x00", "").splitlines()]
    return "\n".join(lines).strip("\n")


# Placeholders that tools write when a document has no title or date of its own: reportlab's
# default title, and the creation time of python-docx's built-in template.
_NO_TITLE = frozenset({"untitled", "unknown", "title"})
_TEMPLATE_CREATED = datetime(2013, 12, 23, 23, 15, tzinfo=UTC)


def _title(value: object) -> str | None:
    title = str(value or "").strip()
    return title if title and title.casefold() not in _NO_TITLE else None


def _iso(value: object) -> str | None:
    if isinstance(value, datetime) and value == _TEMPLATE_CREATED:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    return None


def _pdf(source: str, data: bytes) -> Extracted:
    from pypdf import PdfReader  # imported here: only PDF documents need it
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentContentError(f"'{source}' is an encrypted PDF; remove the password")
        pages = [_clean(page.extract_text() or "") for page in reader.pages]
        meta = reader.metadata
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentContentError(f"'{source}' is a damaged PDF: {exc}") from None
    title = _title(meta.title) if meta is not None else None
    when = None
    if meta is not None:
        try:
            when = _iso(meta.creation_date)
        except ValueError:  # a malformed date string in the metadata: no date, not an error
            when = None
    text = "\n\n".join(p for p in pages if p)
    return Extracted(text=text, title=title, date=when)


def _docx(source: str, data: bytes) -> Extracted:
    import docx  # imported here: only Word documents need it
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DocumentContentError(f"'{source}' is a damaged Word document: {exc}") from None
    blocks: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                blocks.append("\t".join(cell.text for cell in row.cells))
        else:
            blocks.append(item.text)
    props = document.core_properties
    title = _title(props.title)
    return Extracted(text=_clean("\n".join(blocks)), title=title, date=_iso(props.created))


class ExtractionCache:
    """Texts extracted from the latest PDF and Word files by content hash, so each is extracted
    once: an upload is extracted to check it, and the build that follows finds the result here.
    (Builds find older extractions in the index; text files are read as they are, not kept.)
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[str, Extracted] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every extraction."""
        with self._lock:
            self._items.clear()

    def get(self, source: str, data: bytes, content_hash: str | None = None) -> Extracted:
        """The extraction of ``data`` (named ``source``), computed on the first request only."""
        digest = content_hash or hashlib.sha256(data).hexdigest()
        key = f"{format_for(source)}:{digest}"  # the same bytes named .txt and .pdf differ
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        result = extract(source, data)
        if format_for(source) not in EXTRACTED_FORMATS:
            return result
        with self._lock:
            self._items[key] = result
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return result


#: The process's cache, shared by uploads and builds.
EXTRACTIONS = ExtractionCache()
