"""Which segments to merge (a tiered policy) and merging them into one new segment.

Like Lucene's tiered policy, segments are grouped by size into tiers a factor apart: a build
adds one small segment, and when ``merge_factor`` segments share a tier they are merged into
one of the next tier, so a corpus of N passages keeps O(factor · log N) segments and each
passage is rewritten O(log N) times. A segment whose rows are mostly tombstones is rewritten
to drop them. ``qa index --merge`` merges everything into one segment.

A merge reads segments and writes a new one without any lock but its own (one merge at a time),
so neither queries nor builds wait for it. Only at the end does it take the build lock, read the
live generation again, and publish it with the merged segment in place of the ones it merged,
carrying over the tombstones that builds published meanwhile made in them: a build published
during a merge is never lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from filelock import FileLock, Timeout

from qa.config import Settings
from qa.index import storage as store
from qa.index.doctable import DocumentRow
from qa.index.generation import LiveSegment, load_index
from qa.index.lexical import merge_postings
from qa.index.segments import SegmentData, write_segment
from qa.index.tombstones import SegmentEntry, read_segment_entries
from qa.index.vectors import Vectors, build_faiss, choose_index_type

log = logging.getLogger(__name__)

#: Seconds a finished merge waits for the build lock (a build holds it for seconds at most).
PUBLISH_WAIT = 600.0


@dataclass(frozen=True, slots=True)
class SegmentSize:
    """What the policy knows of a segment."""

    id: str
    rows: int
    deleted: int

    @property
    def live(self) -> int:
        """Rows not tombstoned."""
        return self.rows - self.deleted


def tier(live: int, *, factor: int, floor: int) -> int:
    """0 for segments up to ``floor`` passages, then one more for each ``factor`` times larger."""
    if live <= floor:
        return 0
    return 1 + int(math.log(live / floor, factor))


def plan_merge(
    sizes: Sequence[SegmentSize], *, factor: int, floor: int, force: bool = False
) -> list[str]:
    """Ids of the segments to merge now (empty: nothing to do), lowest tier first."""
    if force:
        if len(sizes) > 1 or any(s.deleted for s in sizes):
            return [s.id for s in sizes]
        return []
    tiers: dict[int, list[SegmentSize]] = {}
    for s in sizes:
        tiers.setdefault(tier(s.live, factor=factor, floor=floor), []).append(s)
    for level in sorted(tiers):
        members = sorted(tiers[level], key=lambda s: (s.live, s.id))
        if len(members) >= factor:
            return [s.id for s in members[:factor]]
    mostly_deleted = [s.id for s in sizes if s.deleted * 2 > s.rows]
    return mostly_deleted


def _sentence_rows(
    starts: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sentence rows owned by ``rows`` (in order) and the sentence count of each."""
    counts = (starts[rows + 1] - starts[rows]).astype(np.int64)
    total = int(counts.sum())
    first = np.repeat(starts[rows] - (np.cumsum(counts) - counts), counts)
    return first + np.arange(total, dtype=np.int64), counts


@dataclass(eq=False)
class Merged:
    """A merged segment's contents, and where the old segments' rows and records went."""

    data: SegmentData
    #: old segment id -> new row of each old row (-1: tombstoned, dropped)
    rows: dict[str, npt.NDArray[np.int64]]
    #: old segment id -> new record index of each old document record (-1: dropped)
    docs: dict[str, npt.NDArray[np.int64]]


def _merged_documents(
    chosen: Sequence[LiveSegment], rows: dict[str, npt.NDArray[np.int64]]
) -> tuple[list[DocumentRow], dict[str, npt.NDArray[np.int64]]]:
    """The live document records of ``chosen``, sorted as the new table stores them, and the
    new index of each old record."""
    found: list[tuple[bytes, str, int, DocumentRow]] = []
    for ls in chosen:
        table = ls.docs.table
        for i in ls.docs.live_indices().tolist():
            first, count = (int(x) for x in table.rows[i])
            source = table.sources[i].decode("utf-8")
            row = DocumentRow(
                source=source,
                content_hash=table.hashes[i].decode("ascii"),
                date=table.dates[i].decode("utf-8") or None,
                first=int(rows[ls.segment.id][first]) if count else 0,
                count=count,
                record=table.raw(i),
            )
            found.append((source.encode("utf-8"), ls.segment.id, i, row))
    found.sort(key=lambda f: f[0])
    remap = {ls.segment.id: np.full(len(ls.docs.table), -1, dtype=np.int64) for ls in chosen}
    for new_index, (_, seg_id, i, _row) in enumerate(found):
        remap[seg_id][i] = new_index
    return [f[3] for f in found], remap


def merged_segment(
    chosen: Sequence[LiveSegment], *, index_type: str, **index_params: Any
) -> Merged:
    """The live rows and documents of ``chosen`` as one new segment."""
    lines: list[bytes] = []
    vectors: list[Vectors] = []
    sentences: list[npt.NDArray[Any]] = []
    counts: list[npt.NDArray[np.int64]] = []
    remap: dict[str, npt.NDArray[np.int64]] = {}
    offset = 0
    for ls in chosen:
        seg = ls.segment
        live = np.flatnonzero(~ls.dead_mask).astype(np.int64)
        new_row = np.full(seg.rows, -1, dtype=np.int64)
        new_row[live] = offset + np.arange(len(live), dtype=np.int64)
        remap[seg.id] = new_row
        offset += len(live)
        lines.extend(seg.raw(int(r)) for r in live)
        vectors.append(np.asarray(seg.vectors[live], dtype=np.float32))
        sent_rows, sent_counts = _sentence_rows(np.asarray(seg.sentence_start), live)
        sentences.append(np.asarray(seg.sentence_vectors[sent_rows]))
        counts.append(sent_counts)
    dim = chosen[0].segment.vectors.shape[1]
    all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    postings = merge_postings([(ls.segment.postings, remap[ls.segment.id]) for ls in chosen])
    faiss_index, info = None, {"type": "flat"}
    if index_type != "flat":
        faiss_index, info = build_faiss(all_vectors, index_type=index_type, **index_params)
    documents, doc_remap = _merged_documents(chosen, remap)
    data = SegmentData(
        passages=lines,
        vectors=all_vectors,
        sentence_vectors=np.concatenate(sentences) if sentences else np.zeros((0, dim)),
        sentence_counts=np.concatenate(counts) if counts else np.zeros(0, np.int64),
        postings=postings,
        faiss_index=faiss_index,
        index_info=info,
        documents=documents,
    )
    return Merged(data, remap, doc_remap)


def index_params(settings: Settings) -> dict[str, Any]:
    """FAISS build parameters from the settings."""
    return {
        "hnsw_m": settings.hnsw_m,
        "ef_construction": settings.hnsw_ef_construction,
        "ef_search": settings.hnsw_ef_search,
    }


def merge_segments(settings: Settings, *, force: bool = False) -> str | None:
    """Run the merge policy on the live generation (``force``: merge everything), and return
    the generation published with the merged segment (``None``: no merge). The policy does
    nothing while another merge runs; a forced merge waits for it."""
    if store.current_generation(settings.index_dir) is None:
        return None
    own = FileLock(str(settings.index_dir / store.MERGE_LOCK))
    try:
        own.acquire(timeout=-1 if force else 0)
    except Timeout:
        return None
    try:
        return _merge(settings, force=force)
    finally:
        own.release()


def _merge(settings: Settings, *, force: bool) -> str | None:
    """The merge, under the merge lock: the heavy work first, then a short publish."""
    # Planned from the manifest alone: most builds have nothing to merge.
    listed = store.read_live_manifest(settings, verify=False)[1]["segments"]
    sizes = [SegmentSize(str(e["id"]), int(e["rows"]), int(e["deleted"])) for e in listed]
    chosen_ids = set(
        plan_merge(sizes, factor=settings.merge_factor, floor=settings.merge_floor, force=force)
    )
    if not chosen_ids:
        return None
    gen = load_index(settings, verify=False)  # a snapshot: generations never change
    if not chosen_ids <= {ls.segment.id for ls in gen.segments}:  # a build published since
        sizes = [SegmentSize(e.id, e.rows, len(e.dead_rows)) for e in gen.entries]
        chosen_ids = set(
            plan_merge(sizes, factor=settings.merge_factor, floor=settings.merge_floor, force=force)
        )
    chosen = [ls for ls in gen.segments if ls.segment.id in chosen_ids]
    live = sum(ls.live for ls in chosen)
    index_type = choose_index_type(
        live, exact_threshold=settings.exact_threshold, approximate=settings.approximate_index
    )
    merged = merged_segment(chosen, index_type=index_type, **index_params(settings))
    seg_id = None
    if merged.data.passages or merged.data.documents:
        seg_id = write_segment(settings.index_dir, merged.data)
    lock = FileLock(str(settings.index_dir / store.LOCK))
    try:
        lock.acquire(timeout=PUBLISH_WAIT)
    except Timeout:
        log.warning("merge abandoned: the build lock stayed busy for %s s", PUBLISH_WAIT)
        return None
    try:
        generation = _publish_merge(settings, merged, seg_id)
        store.prune(settings.index_dir, keep=settings.keep_generations, merging=True)
    finally:
        lock.release()
    if generation is not None:
        log.info(
            "merged %d segments (%d passages) into generation %s", len(chosen), live, generation
        )
    return generation


def _publish_merge(settings: Settings, merged: Merged, seg_id: str | None) -> str | None:
    """Publish the live generation (read again now, under the build lock) with the merged
    segment in place of the ones it merged, and with the tombstones builds made in those
    meanwhile moved to the merged segment."""
    folder, manifest = store.read_live_manifest(settings, verify=False)
    entries = read_segment_entries(folder, manifest)
    if not any(e.id in merged.rows for e in entries):
        return None  # rebuilt meanwhile: the merged segment holds nothing live any more
    kept = [e for e in entries if e.id not in merged.rows]
    dead_rows: list[npt.NDArray[np.int64]] = []
    dead_docs: list[npt.NDArray[np.int64]] = []
    now = {e.id: e for e in entries}
    for old_id, new_rows in merged.rows.items():
        new_docs = merged.docs[old_id]
        e = now.get(old_id)
        # A merged segment the live generation no longer lists lost every row to tombstones
        # (only one merge runs at a time, so no other merge took it).
        rows = np.arange(len(new_rows)) if e is None else e.dead_rows
        docs = np.arange(len(new_docs)) if e is None else e.dead_docs
        dead_rows.append(new_rows[rows][new_rows[rows] >= 0])
        dead_docs.append(new_docs[docs][new_docs[docs] >= 0])
    if seg_id is not None:
        entry = SegmentEntry(
            seg_id,
            len(merged.data.passages),
            len(merged.data.documents),
            np.unique(np.concatenate(dead_rows)).astype(np.int64),
            np.unique(np.concatenate(dead_docs)).astype(np.int64),
        )
        if entry.live_rows or entry.live_documents:
            kept.append(entry)
    meta = {k: v for k, v in manifest.items() if k not in ("files", "generation", "segments")}
    meta["merged_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return store.publish(settings.index_dir, meta, kept)
