"""Which segments to merge (a tiered policy) and merging them into one new segment.

Like Lucene's tiered policy, segments are grouped by size into tiers a factor apart: a build
adds one small segment, and when ``merge_factor`` segments share a tier they are merged into
one of the next tier, so a corpus of N passages keeps O(factor · log N) segments and each
passage is rewritten O(log N) times. A segment whose rows are mostly tombstones is rewritten
to drop them. ``qa index --merge`` merges everything into one segment.

A merge only reads segments and writes a new one; the generation that lists it is published by
the builder like any other, so queries never wait for a merge.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.config import Settings
from qa.index import storage as store
from qa.index.generation import IndexGeneration, LiveSegment, load_index
from qa.index.lexical import merge_postings
from qa.index.segments import SegmentData, write_segment
from qa.index.vectors import Vectors, build_faiss, choose_index_type

log = logging.getLogger(__name__)


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


def merged_segment(
    gen: IndexGeneration, chosen: Sequence[LiveSegment], *, index_type: str, **index_params: Any
) -> tuple[SegmentData, dict[str, npt.NDArray[np.int64]]]:
    """The live rows of ``chosen`` as one new segment, and for each old segment id the new row
    of each of its rows (-1 for a tombstone)."""
    del gen  # the rows come from the segments; kept for symmetry with the builder's call
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
    data = SegmentData(
        passages=lines,
        vectors=all_vectors,
        sentence_vectors=np.concatenate(sentences) if sentences else np.zeros((0, dim)),
        sentence_counts=np.concatenate(counts) if counts else np.zeros(0, np.int64),
        postings=postings,
        faiss_index=faiss_index,
        index_info=info,
    )
    return data, remap


def index_params(settings: Settings) -> dict[str, Any]:
    """FAISS build parameters from the settings."""
    return {
        "hnsw_m": settings.hnsw_m,
        "ef_construction": settings.hnsw_ef_construction,
        "ef_search": settings.hnsw_ef_search,
    }


def merge_segments(
    settings: Settings, *, force: bool = False, listed: list[dict[str, Any]] | None = None
) -> str | None:
    """Run the merge policy on the live generation (under the build lock): write the merged
    segment, publish a generation listing it, and return that generation (``None``: no merge).
    ``listed`` is the live generation's segment list when the caller has it at hand."""
    if store.current_generation(settings.index_dir) is None:
        return None
    if listed is None:
        listed = store.read_live_manifest(settings, verify=False)[1]["segments"]
    sizes = [SegmentSize(str(e["id"]), int(e["rows"]), len(e["deleted"])) for e in listed]
    chosen_ids = plan_merge(
        sizes, factor=settings.merge_factor, floor=settings.merge_floor, force=force
    )
    if not chosen_ids:
        return None
    gen = load_index(settings, verify=False)
    chosen = [ls for ls in gen.segments if ls.segment.id in set(chosen_ids)]
    live = sum(ls.live for ls in chosen)
    index_type = choose_index_type(
        live, exact_threshold=settings.exact_threshold, approximate=settings.approximate_index
    )
    data, remap = merged_segment(gen, chosen, index_type=index_type, **index_params(settings))
    kept = [
        {"id": ls.segment.id, "rows": ls.segment.rows, "deleted": [int(r) for r in ls.dead]}
        for ls in gen.segments
        if ls.segment.id not in remap
    ]
    documents = {src: dict(doc) for src, doc in gen.documents.items()}
    if live:
        seg_id = write_segment(settings.index_dir, data)
        kept.append({"id": seg_id, "rows": live, "deleted": []})
        for doc in documents.values():
            old = remap.get(str(doc.get("segment")))
            if old is not None and doc.get("passages"):
                doc.update(segment=seg_id, row=int(old[int(doc["row"])]))
    manifest = {
        **{k: v for k, v in gen.manifest.items() if k not in ("files", "generation")},
        "segments": kept,
        "documents": documents,
        "merged_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    extracted = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((gen.path / store.EXTRACTED).glob("*.json"))
    }
    generation = store.publish(settings.index_dir, manifest, extracted)
    log.info("merged %d segments (%d passages) into generation %s", len(chosen), live, generation)
    return generation
