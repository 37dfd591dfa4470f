"""The catalog of indexed documents: listing, filtering and paging what a generation holds.

Documents are ordered newest first, undated ones last, ties by name. A page ends with an opaque
cursor naming its last document's place in that order, so the next page starts right after it
even if documents were added or deleted in between (a keyset cursor, not an offset).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from qa.errors import InvalidQueryError
from qa.index.doctable import CatalogRow, DocumentTable
from qa.ingest.extract import FORMAT_FOR_SUFFIX

#: The most documents one page may hold.
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """One indexed document, as recorded by the build."""

    source: str
    title: str | None
    date: str | None
    publisher: str | None
    bytes: int
    passages: int
    content_hash: str
    format: str


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of the catalog: the documents, how many match in all, and the next cursor."""

    documents: list[DocumentEntry]
    total: int
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """What to list: a title text filter, an inclusive date range, and the page wanted."""

    title: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQueryError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise InvalidQueryError(
                        f"{name} must be a date as YYYY-MM-DD, got {value!r}"
                    ) from None
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidQueryError(f"date_from {self.date_from} is after date_to {self.date_to}")


def entry(source: str, meta: Mapping[str, Any]) -> DocumentEntry:
    """The catalog entry of ``source`` from its record in a generation's manifest."""
    suffix = source[source.rfind(".") :].lower() if "." in source else ""
    return DocumentEntry(
        source=source,
        title=meta.get("title"),
        date=meta.get("date"),
        publisher=meta.get("publisher"),
        bytes=int(meta.get("bytes", 0)),
        passages=len(meta.get("passages", [])),
        content_hash=str(meta.get("hash", "")),
        format=FORMAT_FOR_SUFFIX.get(suffix, "text"),
    )


def _from_row(row: CatalogRow) -> DocumentEntry:
    suffix = row.source[row.source.rfind(".") :].lower() if "." in row.source else ""
    return DocumentEntry(
        source=row.source,
        title=row.title,
        date=row.date,
        publisher=row.publisher,
        bytes=row.bytes,
        passages=row.passages,
        content_hash=row.content_hash,
        format=FORMAT_FOR_SUFFIX.get(suffix, "text"),
    )


def encode_cursor(doc: DocumentEntry) -> str:
    """An opaque cursor for the place right after ``doc``."""
    raw = json.dumps([doc.date, doc.source], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str | None, str]:
    """The (date, source) a cursor names, or :class:`InvalidQueryError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidQueryError(f"cursor {cursor[:60]!r} is not one this server gave") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not (value[0] is None or isinstance(value[0], str))
        or not isinstance(value[1], str)
    ):
        raise InvalidQueryError(f"cursor {cursor[:60]!r} is not one this server gave")
    return value[0], value[1]


def _after(doc: DocumentEntry, when: str | None, source: str) -> bool:
    """Whether ``doc`` comes after the place (``when``, ``source``) in catalog order."""
    if doc.date is None or when is None:
        if doc.date is None and when is None:
            return doc.source > source
        return doc.date is None  # undated documents come after every dated one
    return doc.date < when or (doc.date == when and doc.source > source)


def _matches(doc: DocumentEntry, query: CatalogQuery) -> bool:
    if query.title:
        haystack = (doc.title or doc.source).casefold()
        if query.title.strip().casefold() not in haystack:
            return False
    if query.date_from or query.date_to:
        if doc.date is None:
            return False
        if query.date_from and doc.date < query.date_from:
            return False
        if query.date_to and doc.date > query.date_to:
            return False
    return True


def list_documents(documents: Mapping[str, Mapping[str, Any]], query: CatalogQuery) -> DocumentPage:
    """One page of the documents of a generation that match ``query``, in catalog order."""
    if isinstance(documents, DocumentTable):  # from the segments' columns, no record parsed
        entries = (_from_row(r) for r in documents.catalog())
    else:
        entries = (entry(src, meta) for src, meta in documents.items())
    matching = [e for e in entries if _matches(e, query)]
    matching.sort(key=lambda d: d.source)
    matching.sort(key=lambda d: d.date or "", reverse=True)  # stable: ties keep name order
    matching.sort(key=lambda d: d.date is None)
    start = 0
    if query.cursor:
        when, source = decode_cursor(query.cursor)
        start = next((i for i, d in enumerate(matching) if _after(d, when, source)), len(matching))
    page = matching[start : start + query.limit]
    more = start + query.limit < len(matching)
    return DocumentPage(
        documents=page,
        total=len(matching),
        next_cursor=encode_cursor(page[-1]) if page and more else None,
    )
