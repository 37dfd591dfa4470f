"""Tombstones: which rows and document records of each segment a generation has deleted.

A generation lists its segments in its manifest (:class:`SegmentEntry`, a line each) and keeps
their tombstones in one file of sorted id arrays, ``tombstones.npz``, so the manifest stays
O(segments) and the tombstones O(deletions) (merges drop them).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.errors import IndexCorruptError

TOMBSTONES = "tombstones.npz"
REBUILD_HINT = "run `python -m qa index --rebuild` to rebuild the index"


def _empty() -> npt.NDArray[np.int64]:
    return np.zeros(0, dtype=np.int64)


@dataclass(eq=False)
class SegmentEntry:
    """A segment as a generation lists it: its size and its tombstones (sorted local rows and
    indices of document records)."""

    id: str
    rows: int
    documents: int
    dead_rows: npt.NDArray[np.int64] = field(default_factory=_empty)
    dead_docs: npt.NDArray[np.int64] = field(default_factory=_empty)

    @property
    def live_rows(self) -> int:
        """Rows not tombstoned."""
        return self.rows - len(self.dead_rows)

    @property
    def live_documents(self) -> int:
        """Document records not tombstoned."""
        return self.documents - len(self.dead_docs)

    def to_json(self) -> dict[str, Any]:
        """The manifest's line for this segment (the tombstones are in their own file)."""
        return {
            "id": self.id,
            "rows": self.rows,
            "documents": self.documents,
            "deleted": len(self.dead_rows),
            "deleted_documents": len(self.dead_docs),
        }


def read_segment_entries(folder: Path, manifest: dict[str, Any]) -> list[SegmentEntry]:
    """The segments a generation lists, with their tombstones read from its own file."""
    listed = manifest.get("segments", [])
    arrays: dict[str, npt.NDArray[np.int64]] = {}
    if any(int(e.get("deleted", 0)) or int(e.get("deleted_documents", 0)) for e in listed):
        try:
            with np.load(folder / TOMBSTONES, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k], dtype=np.int64) for k in z.files}
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(
                f"tombstones '{folder / TOMBSTONES}' are unreadable ({exc}); {REBUILD_HINT}"
            ) from None
    out = []
    for e in listed:
        entry = SegmentEntry(
            id=str(e.get("id")),
            rows=int(e.get("rows", 0)),
            documents=int(e.get("documents", 0)),
            dead_rows=arrays.get(f"{e.get('id')}.rows", _empty()),
            dead_docs=arrays.get(f"{e.get('id')}.docs", _empty()),
        )
        if (len(entry.dead_rows), len(entry.dead_docs)) != (
            int(e.get("deleted", 0)),
            int(e.get("deleted_documents", 0)),
        ):
            raise IndexCorruptError(
                f"the tombstones of segment '{entry.id}' in '{folder}' do not match the "
                f"manifest; {REBUILD_HINT}"
            )
        out.append(entry)
    return out


def tombstone_bytes(segments: list[SegmentEntry]) -> bytes:
    """The ``tombstones.npz`` of a generation listing ``segments``."""
    arrays: dict[str, npt.NDArray[np.int64]] = {}
    for e in segments:
        if len(e.dead_rows):
            arrays[f"{e.id}.rows"] = np.asarray(e.dead_rows, dtype=np.int64)
        if len(e.dead_docs):
            arrays[f"{e.id}.docs"] = np.asarray(e.dead_docs, dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()
