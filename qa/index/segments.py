"""Immutable segments on disk, owned here alone: writing one, opening one, checking one.

Layout of ``embeddings/segments/<id>/`` (never changed once renamed into place)::

    manifest.json       written last: row counts, dimension, index type, each file's SHA-256
    passages.jsonl      one passage per line (text, source, offsets, sentences)
    offsets.npy         int64 byte offset of each line, plus the file's length
    vectors.npy         passage unit vectors, float32, row i for passage i
    sentences.npy       sentence unit vectors, float16, in passage order
    sentence_start.npy  passage i owns sentence rows [s[i], s[i + 1])
    terms.npy, postings_ptr.npy, postings_row.npy, postings_tf.npy, doclen.npy   BM25 postings
    index.faiss         only in a large segment: the approximate index over vectors.npy
    documents.jsonl, doc_*.npy, chrome.txt   its documents' records (qa.index.doctable)

Everything but the FAISS file is memory-mapped when a segment is opened, so opening costs the
same for ten passages or a million; a passage is parsed only when it is read. Generations
(``storage.py``) list segments by id; a segment is shared by every generation that lists it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from qa.errors import IndexCorruptError
from qa.index.doctable import DocumentRow, SegmentDocuments, write_documents
from qa.index.lexical import Postings
from qa.ingest.passages import Passage

SEGMENTS = "segments"
SEGMENT_MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
OFFSETS = "offsets.npy"
VECTORS = "vectors.npy"
SENTENCES = "sentences.npy"
SENTENCE_START = "sentence_start.npy"
FAISS_INDEX = "index.faiss"
_POSTINGS = {
    "terms": "terms.npy",
    "ptr": "postings_ptr.npy",
    "rows": "postings_row.npy",
    "tf": "postings_tf.npy",
    "doclen": "doclen.npy",
}
#: Segments up to this size are checksummed in full whenever they are opened; larger ones only
#: get the cheap checks (sizes, counts) at start-up and in full on write and ``qa index --check``.
FULL_CHECK_BYTES = 64 * 1024 * 1024
REBUILD_HINT = "run `python -m qa index --rebuild` to rebuild the index"


def segments_dir(index_dir: Path) -> Path:
    """Where segment folders live."""
    return index_dir / SEGMENTS


def new_segment_id() -> str:
    """Unique, and sortable by creation time."""
    return f"{time.time_ns():020d}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class SegmentData:
    """What a new segment holds, in row order."""

    passages: list[bytes]  # one JSON line each (already encoded: merges copy them as they are)
    vectors: npt.NDArray[np.float32]
    sentence_vectors: npt.NDArray[Any]
    sentence_counts: npt.NDArray[np.int64]
    postings: Postings
    faiss_index: Any | None
    index_info: dict[str, Any]
    documents: list[DocumentRow]


def encode_passage(p: Passage) -> bytes:
    """One line of ``passages.jsonl``."""
    return (json.dumps(p.to_json(), ensure_ascii=False) + "\n").encode("utf-8")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in blocks (segment files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_segment(index_dir: Path, data: SegmentData) -> str:
    """Write a segment aside, fsync it, checksum it, and rename it into place; its id."""
    root = segments_dir(index_dir)
    root.mkdir(parents=True, exist_ok=True)
    seg_id = new_segment_id()
    tmp = root / f".{seg_id}.tmp"
    tmp.mkdir()
    try:
        offsets = np.zeros(len(data.passages) + 1, dtype=np.int64)
        with open(tmp / PASSAGES, "wb") as fh:
            for i, line in enumerate(data.passages):
                fh.write(line)
                offsets[i + 1] = offsets[i] + len(line)
        np.save(tmp / OFFSETS, offsets, allow_pickle=False)
        np.save(tmp / VECTORS, np.ascontiguousarray(data.vectors, np.float32), allow_pickle=False)
        # Half precision is plenty for ranking a handful of sentences, at half the disk.
        np.save(tmp / SENTENCES, data.sentence_vectors.astype(np.float16), allow_pickle=False)
        starts = np.concatenate([[0], np.cumsum(data.sentence_counts)]).astype(np.int64)
        np.save(tmp / SENTENCE_START, starts, allow_pickle=False)
        for field, name in _POSTINGS.items():
            np.save(tmp / name, getattr(data.postings, field), allow_pickle=False)
        if data.faiss_index is not None:
            faiss.write_index(data.faiss_index, str(tmp / FAISS_INDEX))
        write_documents(tmp, data.documents)
        files = {}
        for path in sorted(tmp.iterdir()):
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = {
            "segment": seg_id,
            "rows": len(data.passages),
            "documents": len(data.documents),
            "sentences": int(starts[-1]),
            "dimension": int(data.vectors.shape[1]) if data.vectors.ndim == 2 else 0,
            "index": data.index_info,
            "files": files,
        }
        (tmp / SEGMENT_MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        with open(tmp / SEGMENT_MANIFEST, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, root / seg_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return seg_id


@dataclass(eq=False)
class Segment:
    """An opened segment: memory-mapped arrays, passages read on demand."""

    id: str
    folder: Path
    manifest: dict[str, Any]
    vectors: npt.NDArray[np.float32]
    sentence_vectors: npt.NDArray[Any]
    sentence_start: npt.NDArray[np.int64]
    postings: Postings
    faiss_index: Any | None
    documents: SegmentDocuments
    _offsets: npt.NDArray[np.int64]
    _text: mmap.mmap | bytes

    @property
    def rows(self) -> int:
        """Passages in this segment, tombstoned or not."""
        return len(self._offsets) - 1

    def raw(self, row: int) -> bytes:
        """The stored JSON line of passage ``row``."""
        return bytes(self._text[int(self._offsets[row]) : int(self._offsets[row + 1])])

    def passage(self, row: int) -> Passage:
        """Passage ``row``, parsed now."""
        try:
            return Passage.from_json(json.loads(self.raw(row)))
        except (ValueError, TypeError) as exc:
            raise IndexCorruptError(
                f"passage {row} of '{self.folder / PASSAGES}' is unreadable ({exc}); {REBUILD_HINT}"
            ) from None


def check_files(folder: Path, files: dict[str, dict[str, Any]], *, full: bool = True) -> None:
    """Raise :class:`IndexCorruptError` naming the first file that is missing, of the wrong size
    or (with ``full``) not matching its SHA-256."""
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            raise IndexCorruptError(f"index file '{path}' is missing; {REBUILD_HINT}")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise IndexCorruptError(
                f"index file '{path}' is {size} bytes, expected {want['bytes']} "
                f"(truncated or altered); {REBUILD_HINT}"
            )
        if full and sha256_file(path) != want["sha256"]:
            raise IndexCorruptError(
                f"index file '{path}' does not match its checksum (corrupted); {REBUILD_HINT}"
            )


def read_segment_manifest(folder: Path) -> dict[str, Any]:
    """A segment's manifest, or :class:`IndexCorruptError` naming it."""
    path = folder / SEGMENT_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"segment '{folder}' is missing; {REBUILD_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"segment manifest '{path}' is unreadable ({exc}); {REBUILD_HINT}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise IndexCorruptError(f"segment manifest '{path}' is not a segment manifest")
    return data


def check_segment(folder: Path, *, full: bool | None = None) -> dict[str, Any]:
    """Check a segment's files against its manifest: sizes always, SHA-256 when ``full`` (by
    default: when the segment is small enough for that to be cheap). Returns the manifest."""
    manifest = read_segment_manifest(folder)
    files: dict[str, dict[str, Any]] = manifest["files"]
    if full is None:
        full = sum(int(f["bytes"]) for f in files.values()) <= FULL_CHECK_BYTES
    check_files(folder, files, full=full)
    return manifest


def _load(folder: Path, name: str) -> Any:
    try:
        return np.load(folder / name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"index file '{folder / name}' is unreadable ({exc}); {REBUILD_HINT}"
        ) from None


def open_segment(index_dir: Path, seg_id: str, *, full_check: bool | None = None) -> Segment:
    """Open segment ``seg_id`` after the checks of :func:`check_segment`."""
    if not seg_id or "/" in seg_id or "\\" in seg_id or seg_id.startswith("."):
        raise IndexCorruptError(f"'{seg_id}' is not a segment id; {REBUILD_HINT}")
    folder = segments_dir(index_dir) / seg_id
    manifest = check_segment(folder, full=full_check)
    offsets = _load(folder, OFFSETS)
    rows = int(manifest.get("rows", -1))
    vectors = _load(folder, VECTORS)
    sentence_start = _load(folder, SENTENCE_START)
    sentences = _load(folder, SENTENCES)
    postings = Postings(**{f: _load(folder, name) for f, name in _POSTINGS.items()})
    if not (len(offsets) - 1 == len(vectors) == rows == len(postings.doclen)) or (
        len(sentence_start) != rows + 1 or int(sentence_start[-1]) != len(sentences)
    ):
        raise IndexCorruptError(
            f"segment '{folder}' has row counts that do not agree ({rows} passages, "
            f"{len(vectors)} vectors); {REBUILD_HINT}"
        )
    documents = SegmentDocuments(folder, _load)
    if len(documents) and int(documents.rows[:, 0].max() + 0) > rows:
        raise IndexCorruptError(f"the documents of segment '{folder}' point past its rows")
    faiss_index = None
    if (folder / FAISS_INDEX).exists():
        try:
            faiss_index = faiss.read_index(str(folder / FAISS_INDEX))
        except RuntimeError as exc:
            raise IndexCorruptError(
                f"FAISS index '{folder / FAISS_INDEX}' is unreadable: {exc}"
            ) from None
    text: mmap.mmap | bytes = b""
    if rows:
        with open(folder / PASSAGES, "rb") as fh:
            # The mapping outlives the file name: a segment deleted by a later build stays
            # readable for a server that still answers from a generation listing it.
            text = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return Segment(
        seg_id,
        folder,
        manifest,
        vectors,
        sentences,
        sentence_start,
        postings,
        faiss_index,
        documents,
        offsets,
        text,
    )
