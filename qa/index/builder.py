"""Building and updating the index incrementally, safely, one build at a time.

Content hashes decide the work: unchanged files keep their passages and vectors, edited files
are re-chunked and only passages whose embedded text is new are embedded again, renamed files
reuse their vectors, deleted files disappear from every structure. The new passages become one
new segment; the old rows of edited and deleted files become tombstones; a new generation that
lists the segments is switched to atomically (see :mod:`qa.index.storage`). Then the merge
policy (:mod:`qa.index.merge`) may compact segments into a further generation.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from qa.config import Settings
from qa.embed.base import Embedder, Vectors
from qa.embed.registry import load_embedder
from qa.errors import IndexBusyError, IndexSchemaError, QAError
from qa.index import storage as store
from qa.index.diff import BuildSummary, collect_passages
from qa.index.doctable import DocumentRow, encode_record
from qa.index.executor import Executor, LocalExecutor
from qa.index.generation import IndexGeneration, load_index
from qa.index.lexical import build_postings
from qa.index.merge import index_params, merge_segments
from qa.index.provenance import build_versions, model_info
from qa.index.seedscan import find_changes, save_cache
from qa.index.segments import SegmentData, encode_passage, write_segment
from qa.index.tombstones import SegmentEntry
from qa.index.vectors import build_faiss, choose_index_type
from qa.ingest.passages import Passage

log = logging.getLogger(__name__)


def _load_previous(
    settings: Settings, *, rebuild: bool, loaded: IndexGeneration | None = None
) -> IndexGeneration | None:
    """The live generation (``loaded`` if it is still that one: generations never change), or
    ``None`` for a first build or rebuild."""
    current = None if rebuild else store.current_generation(settings.index_dir)
    if current is None:
        return None
    if loaded is not None and loaded.generation == current:
        return loaded
    try:
        return load_index(settings)
    except IndexSchemaError as exc:
        # Written by an older seedqa: the seeds are all a build needs, so this build upgrades
        # it (embedding everything again); the old generation serves until the new one is live.
        log.warning(
            "index %s uses %s: building it again from the seeds folder (the old one serves "
            "until the new one is live)",
            settings.index_dir,
            exc.layout,
        )
        return None


def make_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names; Ray is imported only when it is asked for."""
    if settings.executor == "ray":
        from qa.index.ray_executor import RayExecutor

        return RayExecutor(settings)
    return LocalExecutor()


def build_index(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    executor: Executor | None = None,
    rebuild: bool = False,
    rehash: bool = False,
    merge: bool = False,
    wait: float = 0.0,
    progress: bool = False,
    before: Callable[[], None] | None = None,
    paths: Collection[str] | None = None,
    run_policy: bool = True,
    loaded: IndexGeneration | None = None,
) -> BuildSummary:
    """Bring the index in ``settings.index_dir`` up to date with ``settings.seeds_dir``.

    One build at a time: another waits up to ``wait`` seconds for the lock, then raises
    :class:`IndexBusyError`. ``rebuild`` ignores the existing index; ``rehash`` reads every
    seed file instead of trusting the stat cache; ``merge`` merges every segment into one
    afterwards (``qa index --merge``). ``executor`` embeds (default: the one
    ``settings.executor`` names, made and closed here). ``before`` runs under the lock before
    the seeds are read, so an upload or deletion made there is never raced by another build.
    ``paths`` (sources relative to the seeds folder) are the files the caller changed: only
    they are stat'ed and read when the stat cache allows it (see :mod:`qa.index.seedscan`).
    The merge policy runs after the lock is released, so a merge never holds up another
    build; ``run_policy=False`` leaves it to the caller (the service's background thread).
    ``loaded``: the caller's open generation, used if it is still the live one.
    """
    own = executor is None
    # Made before the lock is taken: a missing extra is refused without touching the index.
    executor_ = make_executor(settings) if executor is None else executor
    try:
        with _build_lock(settings, wait=wait):
            if before is not None:
                before()
            summary = _build_locked(
                settings,
                embedder=embedder,
                executor=executor_,
                rebuild=rebuild,
                rehash=rehash,
                progress=progress,
                paths=None if rebuild or rehash else paths,
                loaded=loaded,
            )
    finally:
        if own:
            executor_.close()
    if summary.changed and summary.generation:
        summary.published.append(summary.generation)
    # Nothing changed and no merge asked: the policy already ran after the last change.
    policy = run_policy and summary.changed
    merged = merge_segments(settings, force=merge) if policy or merge else None
    if merged is not None:
        summary.generation, summary.merged = merged, True
        summary.published.append(merged)
    return summary


@contextmanager
def _build_lock(settings: Settings, *, wait: float) -> Iterator[None]:
    """Hold the index's build lock, or raise :class:`IndexBusyError` after ``wait`` seconds."""
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.index_dir / store.LOCK))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise IndexBusyError(
            f"another build is already running on '{settings.index_dir}' "
            f"(lock file '{settings.index_dir / store.LOCK}'); try again when it has finished"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _build_locked(
    settings: Settings,
    *,
    embedder: Embedder | None,
    executor: Executor,
    rebuild: bool,
    rehash: bool,
    progress: bool,
    paths: Collection[str] | None,
    loaded: IndexGeneration | None = None,
) -> BuildSummary:
    """The build itself, under the lock."""
    started = time.perf_counter()
    # Leftovers of builds that were killed are removed before anything else.
    store.prune(settings.index_dir, keep=settings.keep_generations)
    previous = _load_previous(settings, rebuild=rebuild, loaded=loaded)
    fresh = rebuild or (
        previous is None and store.current_generation(settings.index_dir) is not None
    )
    changes = find_changes(
        settings, previous, rehash=rehash or fresh, paths=None if fresh else paths
    )
    skipped = changes.scan.skipped
    summary = BuildSummary(skipped=len(skipped), skipped_files=skipped)
    new, records, gone, embedder_ = collect_passages(
        settings,
        changes.files,
        changes.vanished,
        changes.previous,
        changes.total,
        embedder,
        summary,
    )
    kept = previous.size - sum(len(previous.by_source[s]) for s in gone) if previous else 0
    summary.passages = kept + len(new)
    summary.changed = previous is None or bool(
        summary.added or summary.updated or summary.removed or summary.renamed
    )
    if not summary.changed:
        summary.generation = store.current_generation(settings.index_dir)
        if previous is not None:
            save_cache(settings, changes, previous.manifest.get("documents_id"))
        summary.took_ms = round((time.perf_counter() - started) * 1000, 1)
        return summary

    vectors, sentence_vectors, summary.embedded = _vectors_for(
        new, previous, gone, embedder_, settings, executor=executor, progress=progress
    )
    segments = _tombstoned(previous, gone)
    if records:
        segments.append(_add_segment(settings, new, vectors, sentence_vectors, records))
    documents_id = secrets.token_hex(8)
    summary.generation = _publish(
        settings, segments, summary, model_info(settings, embedder_, previous), documents_id
    )
    save_cache(settings, changes, documents_id)
    store.prune(settings.index_dir, keep=settings.keep_generations)
    summary.took_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info("built generation %s: %s", summary.generation, summary.to_json())
    return summary


def _publish(
    settings: Settings,
    segments: list[SegmentEntry],
    summary: BuildSummary,
    model_info: dict[str, Any],
    documents_id: str,
) -> str:
    """Publish a generation listing ``segments``; its id."""
    manifest = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model_info,
        "chunking": store.chunking_settings(settings),
        "metric": "inner_product_on_unit_vectors",
        "passages": summary.passages,
        "versions": build_versions(),
        # Drawn anew whenever documents change (a merge keeps it): see qa.index.seedscan.
        "documents_id": documents_id,
    }
    return store.publish(settings.index_dir, manifest, segments)


def _add_segment(
    settings: Settings,
    new: list[Passage],
    vectors: Vectors,
    sentence_vectors: Vectors,
    records: dict[str, dict[str, Any]],
) -> SegmentEntry:
    """Write the new passages and their documents' records as one segment."""
    first: dict[str, int] = {}
    for row, p in enumerate(new):
        first.setdefault(p.source, row)
    docs = [
        DocumentRow(
            source=source,
            content_hash=str(record["hash"]),
            date=record.get("date"),
            first=first.get(source, 0),
            count=len(record["passages"]),
            record=encode_record(record),
        )
        for source, record in records.items()
    ]
    seg_id = _write_segment(settings, new, vectors, sentence_vectors, docs)
    return SegmentEntry(seg_id, len(new), len(docs))


def _tombstoned(previous: IndexGeneration | None, gone: set[str]) -> list[SegmentEntry]:
    """The previous generation's segment list with the rows and records of ``gone`` documents
    deleted; segments left without a live row or document are dropped."""
    if previous is None:
        return []
    entries = previous.entries
    dead_rows: dict[int, list[int]] = {}
    dead_docs: dict[int, list[int]] = {}
    for source in gone:
        found = previous.documents.locate(source)
        if found is None:
            continue
        k, i = found
        first, count = (int(x) for x in entries_rows(previous, k, i))
        dead_rows.setdefault(k, []).extend(range(first, first + count))
        dead_docs.setdefault(k, []).append(i)
    out = []
    for k, e in enumerate(entries):
        if k in dead_rows:
            e.dead_rows = np.union1d(e.dead_rows, np.asarray(dead_rows[k], dtype=np.int64))
            e.dead_docs = np.union1d(e.dead_docs, np.asarray(dead_docs[k], dtype=np.int64))
        if e.live_rows or e.live_documents:
            out.append(e)
    return out


def entries_rows(gen: IndexGeneration, k: int, i: int) -> tuple[int, int]:
    """First row and row count of record ``i`` of segment ``k`` of ``gen``."""
    first, count = gen.segments[k].segment.documents.rows[i]
    return int(first), int(count)


def _known_vectors(
    previous: IndexGeneration | None, gone: set[str]
) -> dict[str, tuple[Vectors, Vectors]]:
    """Vectors of the passages of edited, renamed and deleted documents, by embed hash: the
    text that moves or stays put in an edit is not embedded again."""
    known: dict[str, tuple[Vectors, Vectors]] = {}
    if previous is None:
        return known
    for source in gone:
        for row in previous.by_source.get(source, []):
            ls, local = previous.locate(row)
            seg = ls.segment
            lo, hi = int(seg.sentence_start[local]), int(seg.sentence_start[local + 1])
            known[seg.passage(local).embed_hash] = (
                np.asarray(seg.vectors[local], dtype=np.float32),
                np.asarray(seg.sentence_vectors[lo:hi], dtype=np.float32),
            )
    return known


def _vectors_for(
    passages: list[Passage],
    previous: IndexGeneration | None,
    gone: set[str],
    embedder: Embedder | None,
    settings: Settings,
    *,
    executor: Executor,
    progress: bool,
) -> tuple[Vectors, Vectors, int]:
    """Passage and sentence vectors for ``passages``, reusing every vector whose embedded text
    was embedded before. Returns (passage vectors, sentence vectors in passage order, embedded)."""
    known = _known_vectors(previous, gone)
    todo: dict[str, Passage] = {}
    for p in passages:
        if p.embed_hash not in known and p.embed_hash not in todo:
            todo[p.embed_hash] = p
    if todo:
        if embedder is None:
            embedder = load_embedder(settings)
        items = list(todo.values())
        fresh, fresh_sents = executor.embed_passages(
            [p.embed_text() for p in items],
            [p.sentence_spans_in_embed_text() for p in items],
            embedder=embedder,
            batch_size=settings.batch_size,
            progress=progress,
        )
        for p, v, sv in zip(items, fresh, fresh_sents, strict=True):
            known[p.embed_hash] = (v, sv)
    dim = embedder.dimension if embedder else (previous.dimension if previous else 1)
    if not passages:
        empty = np.zeros((0, dim), dtype=np.float32)
        return empty, empty, 0
    vectors = np.stack([known[p.embed_hash][0] for p in passages]).astype(np.float32)
    sentences = np.concatenate([known[p.embed_hash][1] for p in passages]).astype(np.float32)
    return vectors, sentences.reshape(-1, dim), len(todo)


def _write_segment(
    settings: Settings,
    passages: list[Passage],
    vectors: Vectors,
    sentence_vectors: Vectors,
    documents: list[DocumentRow],
) -> str:
    """Build the BM25 postings (and, for a large segment, the FAISS index) of ``passages`` and
    have storage write them as a new segment; its id."""
    index_type = choose_index_type(
        len(passages),
        exact_threshold=settings.exact_threshold,
        approximate=settings.approximate_index,
    )
    faiss_index, info = None, {"type": "flat"}
    if index_type != "flat":
        faiss_index, info = build_faiss(vectors, index_type=index_type, **index_params(settings))
    data = SegmentData(
        passages=[encode_passage(p) for p in passages],
        vectors=vectors,
        sentence_vectors=sentence_vectors,
        sentence_counts=np.asarray([len(p.sentences) for p in passages], dtype=np.int64),
        postings=build_postings(p.embed_text() for p in passages),
        faiss_index=faiss_index,
        index_info=info,
        documents=documents,
    )
    return write_segment(settings.index_dir, data)


__all__ = ["BuildSummary", "QAError", "build_index"]
