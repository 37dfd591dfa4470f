"""Reading one indexed document: its file inside the seeds folder, its metadata, a highlight."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from qa.errors import DocumentNotFoundError, InvalidQueryError
from qa.ingest.extract import EXTRACTED_FORMATS, FORMAT_FOR_SUFFIX


@dataclass(frozen=True, slots=True)
class Document:
    """A seed article of the live index, read fresh from disk, with its indexed metadata."""

    source: str
    title: str | None
    date: str | None
    publisher: str | None
    #: How many passages of this article are indexed.
    passages: int
    bytes: int
    #: The whole file as UTF-8 text, or the text extracted from a PDF or Word file when it was
    #: indexed; passage offsets index into it.
    text: str
    #: The file differs from the indexed version, so offsets may be stale.
    changed_since_indexed: bool


def resolve_document(seeds_dir: Path, source: str) -> Path:
    """The file for ``source`` if it is a regular file inside ``seeds_dir``, else not found.

    ``source`` comes from a URL or a user (already percent-decoded), so ``..``, absolute paths,
    backslashes and symlinks that lead out of the seeds folder are all refused.
    """
    not_found = DocumentNotFoundError(f"no document {source!r} in the seeds folder")
    if not source or "\x00" in source or "\\" in source:
        raise not_found
    relative = PurePosixPath(source)
    if relative.is_absolute() or any(part in ("..", ".") for part in relative.parts):
        raise not_found
    root = seeds_dir.resolve()
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise not_found from None
    if not path.is_relative_to(root) or not path.is_file():
        raise not_found
    return path


def read_document(
    documents: Mapping[str, Mapping[str, Any]],
    seeds_dir: Path,
    source: str,
    *,
    generation: Path | None = None,
) -> Document:
    """The document ``source`` of an index whose per-source metadata is ``documents``.

    A PDF or Word file's text is the one extracted when it was indexed, kept in its record
    (``generation`` is no longer needed for it), so offsets stay right even if the file has
    changed since.
    """
    del generation
    meta = documents.get(source)
    if meta is None:
        raise DocumentNotFoundError(f"no document {source!r} in the index")
    data = resolve_document(seeds_dir, source).read_bytes()
    text = data.decode("utf-8", errors="replace")
    if FORMAT_FOR_SUFFIX.get(PurePosixPath(source).suffix.lower()) in EXTRACTED_FORMATS:
        record = meta.get("extracted")
        if not isinstance(record, Mapping):
            raise DocumentNotFoundError(f"the text extracted from {source!r} is not in the index")
        text = str(record["text"])
    return Document(
        source=source,
        title=meta.get("title"),
        date=meta.get("date"),
        publisher=meta.get("publisher"),
        passages=len(meta.get("passages", [])),
        bytes=len(data),
        text=text,
        changed_since_indexed=hashlib.sha256(data).hexdigest() != meta.get("hash"),
    )


def highlight(text: str, start: int | None, end: int | None) -> tuple[str, str, str] | None:
    """``text`` cut as (before, passage, after) around ``[start:end]``; ``None`` for no range.

    Raises :class:`InvalidQueryError` naming the problem when only one end is given or the
    range is reversed (offsets outside the text are the caller's to refuse).
    """
    if (start is None) != (end is None):
        raise InvalidQueryError("give both start and end, or neither")
    if start is None or end is None:
        return None
    if start > end:
        raise InvalidQueryError(f"start ({start}) is after end ({end})")
    return text[:start], text[start:end], text[end:]
