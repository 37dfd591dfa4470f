"""The documents table of a segment, and the documents of a generation read through them.

Each segment carries the records of the documents whose passages it holds, written once with
it and never changed (a document with no passage is there too, with no rows)::

    documents.jsonl     one JSON record per document: title, date, publisher, bytes, chunk ids,
                        chrome terms, and for PDF and Word files the extracted text
    doc_offsets.npy     byte offset of each record, plus the file's length
    doc_sources.npy     the documents' sources (UTF-8, sorted: looked up by binary search)
    doc_hashes.npy      content SHA-256 of each document (hex)
    doc_dates.npy       date of each document ("" for none), for date filters
    doc_catalog.npy     title, publisher (JSON, one per document) and bytes, for the catalog
    doc_rows.npy        first row and number of rows of each document in the segment
    chrome.txt          the chrome terms of all its documents, one per line

All are memory-mapped; a record is parsed only when it is read. A generation deletes a document
with a tombstone (the index of its record), as it deletes passage rows, so publishing an edit
writes the edit's segment and a manifest of O(segments), never a table of every document.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.errors import IndexCorruptError

RECORDS = "documents.jsonl"
_COLUMNS = {
    "offsets": "doc_offsets.npy",
    "sources": "doc_sources.npy",
    "hashes": "doc_hashes.npy",
    "dates": "doc_dates.npy",
    "rows": "doc_rows.npy",
    "catalog": "doc_catalog.npy",
    "bytes": "doc_bytes.npy",
}
CHROME = "chrome.txt"
REBUILD_HINT = "run `python -m qa index --rebuild` to rebuild the index"


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """One document as a new segment stores it."""

    source: str
    content_hash: str
    date: str | None
    first: int  # first row of its passages in the segment
    count: int
    record: bytes  # one JSON line (merges copy it as it is)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One line of ``documents.jsonl``; rows and segment are not in it (a merge moves them)."""
    kept = {k: v for k, v in record.items() if k not in ("segment", "row")}
    return (json.dumps(kept, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def write_documents(folder: Path, docs: list[DocumentRow]) -> None:
    """Write the documents table of a segment being written in ``folder``."""
    docs = sorted(docs, key=lambda d: d.source.encode("utf-8"))
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    chrome: set[str] = set()
    catalog: list[bytes] = []
    sizes: list[int] = []
    with open(folder / RECORDS, "wb") as fh:
        for i, d in enumerate(docs):
            fh.write(d.record)
            offsets[i + 1] = offsets[i] + len(d.record)
            record = json.loads(d.record)
            chrome.update(record.get("chrome_terms", []))
            pair = [record.get("title"), record.get("publisher")]
            catalog.append(json.dumps(pair, ensure_ascii=False).encode("utf-8"))
            sizes.append(int(record.get("bytes", 0)))
    columns = {
        "offsets": offsets,
        "sources": np.asarray([d.source.encode("utf-8") for d in docs], dtype=np.bytes_),
        "hashes": np.asarray([d.content_hash.encode("ascii") for d in docs], dtype="S64"),
        "dates": np.asarray([(d.date or "").encode("utf-8") for d in docs], dtype=np.bytes_),
        "rows": np.asarray([(d.first, d.count) for d in docs], dtype=np.int64).reshape(-1, 2),
        "catalog": np.asarray(catalog, dtype=np.bytes_),
        "bytes": np.asarray(sizes, dtype=np.int64),
    }
    for key, name in _COLUMNS.items():
        np.save(folder / name, columns[key], allow_pickle=False)
    (folder / CHROME).write_text("".join(f"{t}\n" for t in sorted(chrome)), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """What the catalog lists of a document."""

    source: str
    title: str | None
    date: str | None
    publisher: str | None
    bytes: int
    passages: int
    content_hash: str


class SegmentDocuments:
    """The documents table of one opened segment (memory-mapped)."""

    def __init__(self, folder: Path, load: Callable[[Path, str], Any]) -> None:
        self.folder = folder
        cols = {key: load(folder, name) for key, name in _COLUMNS.items()}
        self.offsets: npt.NDArray[np.int64] = cols["offsets"]
        self.sources: npt.NDArray[np.bytes_] = cols["sources"]
        self.hashes: npt.NDArray[np.bytes_] = cols["hashes"]
        self.dates: npt.NDArray[np.bytes_] = cols["dates"]
        self.rows: npt.NDArray[np.int64] = cols["rows"]
        self.catalog: npt.NDArray[np.bytes_] = cols["catalog"]
        self.bytes: npt.NDArray[np.int64] = cols["bytes"]
        n = len(self.sources)
        same = len(self.hashes) == len(self.dates) == len(self.catalog) == len(self.bytes) == n
        if not (len(self.offsets) == n + 1 and same) or (self.rows.shape != (n, 2)):
            raise IndexCorruptError(
                f"the documents table of segment '{folder}' has columns that do not agree; "
                f"{REBUILD_HINT}"
            )
        self._text: mmap.mmap | bytes = b""
        if n:
            with open(folder / RECORDS, "rb") as fh:
                self._text = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return len(self.sources)

    def find(self, source: str) -> int | None:
        """The index of ``source``'s record, or ``None``."""
        key = source.encode("utf-8")
        i = int(np.searchsorted(self.sources, key))
        return i if i < len(self.sources) and self.sources[i] == key else None

    def raw(self, i: int) -> bytes:
        """The stored JSON line of record ``i``."""
        return bytes(self._text[int(self.offsets[i]) : int(self.offsets[i + 1])])

    def record(self, i: int) -> dict[str, Any]:
        """Record ``i``, parsed now."""
        try:
            data = json.loads(self.raw(i))
        except ValueError as exc:
            raise IndexCorruptError(
                f"document {i} of '{self.folder / RECORDS}' is unreadable ({exc}); {REBUILD_HINT}"
            ) from None
        if not isinstance(data, dict):
            raise IndexCorruptError(f"document {i} of '{self.folder / RECORDS}' is not a record")
        return data

    def chrome_terms(self) -> list[str]:
        """The chrome terms of every document of the segment."""
        return (self.folder / CHROME).read_text(encoding="utf-8").split()


@dataclass(eq=False)
class LiveDocuments:
    """One segment's documents as a generation sees them."""

    segment_id: str
    table: SegmentDocuments
    dead: npt.NDArray[np.bool_]  # by record index

    def live_indices(self) -> npt.NDArray[np.int64]:
        """Indices of the records not tombstoned."""
        return np.flatnonzero(~self.dead).astype(np.int64)


class DocumentTable(Mapping[str, Mapping[str, Any]]):
    """The live documents of a generation, by source: records read from the segments' tables
    when asked for; nothing is held per document."""

    def __init__(self, parts: list[LiveDocuments]) -> None:
        self.parts = parts
        self._len = sum(int((~p.dead).sum()) for p in parts)

    def locate(self, source: str) -> tuple[int, int] | None:
        """The part (segment, in generation order) holding ``source``'s live record, and the
        record's index there."""
        for k in range(len(self.parts) - 1, -1, -1):  # an edit's record is in a later segment
            part = self.parts[k]
            i = part.table.find(source)
            if i is not None and not part.dead[i]:
                return k, i
        return None

    def __getitem__(self, source: str) -> Mapping[str, Any]:
        found = self.locate(source)
        if found is None:
            raise KeyError(source)
        part, i = self.parts[found[0]], found[1]
        first, count = (int(x) for x in part.table.rows[i])
        return {**part.table.record(i), "segment": part.segment_id, "row": first, "rows": count}

    def catalog(self) -> Iterator[CatalogRow]:
        """What the catalog lists of every live document, from the columns alone."""
        for part in self.parts:
            t = part.table
            live = part.live_indices()
            columns = zip(
                t.sources[live].tolist(),
                t.dates[live].tolist(),
                t.catalog[live].tolist(),
                t.bytes[live].tolist(),
                t.rows[live, 1].tolist(),
                t.hashes[live].tolist(),
                strict=True,
            )
            for source, date, pair, size, count, content_hash in columns:
                title, publisher = json.loads(pair)
                yield CatalogRow(
                    source.decode("utf-8"),
                    title,
                    date.decode("utf-8") or None,
                    publisher,
                    size,
                    count,
                    content_hash.decode("ascii"),
                )

    def __iter__(self) -> Iterator[str]:
        for part in self.parts:
            for raw in part.table.sources[part.live_indices()].tolist():
                yield raw.decode("utf-8")

    def __len__(self) -> int:
        return self._len

    def __contains__(self, source: object) -> bool:
        return isinstance(source, str) and self.locate(source) is not None

    def hashes(self) -> dict[str, str]:
        """Content hash of every live document, by source (what a build's diff compares)."""
        out: dict[str, str] = {}
        for part in self.parts:
            live = part.live_indices()
            sources = part.table.sources[live].tolist()
            hashes = part.table.hashes[live].tolist()
            out.update(
                (s.decode("utf-8"), h.decode("ascii")) for s, h in zip(sources, hashes, strict=True)
            )
        return out

    def with_hash(self, content_hash: str) -> Mapping[str, Any] | None:
        """The record of a live document with this content hash, if any."""
        key = content_hash.encode("ascii", errors="replace")
        for part in reversed(self.parts):
            for i in np.flatnonzero(part.table.hashes == key).tolist():
                if not part.dead[i]:
                    return part.table.record(int(i))
        return None
