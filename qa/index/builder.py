"""Building and updating the index incrementally, safely, one build at a time.

Content hashes decide the work: unchanged files keep their passages and vectors, edited files
are re-chunked and only passages whose embedded text is new are embedded again, renamed files
reuse their vectors, deleted files disappear from every structure. The result is written as a
new generation beside the old one and switched to atomically (see :mod:`qa.index.storage`).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from qa.config import Settings
from qa.embed.base import Embedder, Vectors
from qa.embed.registry import load_embedder
from qa.errors import IndexBusyError, QAError
from qa.index import storage as store
from qa.index.executor import Executor, LocalExecutor
from qa.index.lexical import LexicalIndex, tokenize
from qa.index.vectors import build_faiss, choose_index_type
from qa.ingest.articles import Article, parse_article
from qa.ingest.passages import Passage, make_passages
from qa.ingest.seeds import SeedFile, SkippedFile, scan

log = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """What a build did. Counts are documents, except ``passages`` and ``embedded``."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    renamed: int = 0
    skipped: int = 0
    passages: int = 0
    embedded: int = 0
    took_ms: float = 0.0
    generation: str | None = None
    changed: bool = False
    skipped_files: list[SkippedFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The summary printed by ``qa index --json`` and returned by ``POST /api/reindex``."""
        out = asdict(self)
        out["skipped_files"] = [asdict(s) for s in self.skipped_files]
        return out


@dataclass
class _Previous:
    folder: Path
    documents: dict[str, dict[str, Any]]
    passages: list[Passage]
    vectors: Vectors
    sentences: Vectors
    model: dict[str, Any]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("seedqa", "faiss-cpu", "sentence-transformers", "torch", "numpy", "bm25s"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _load_previous(settings: Settings, *, rebuild: bool) -> _Previous | None:
    """The live generation's documents, passages and vectors, read in full to reuse them."""
    if rebuild or store.current_generation(settings.index_dir) is None:
        return None
    stored = store.read_generation(settings, mmap=False)
    return _Previous(
        folder=stored.folder,
        documents=stored.manifest.get("documents", {}),
        passages=stored.passages,
        vectors=stored.vectors,
        sentences=stored.sentence_vectors.astype(np.float32),
        model=stored.manifest["model"],
    )


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
    wait: float = 0.0,
    progress: bool = False,
    before: Callable[[], None] | None = None,
) -> BuildSummary:
    """Bring the index in ``settings.index_dir`` up to date with ``settings.seeds_dir``.

    Only one build runs at a time: another one waits up to ``wait`` seconds for the lock and
    then raises :class:`IndexBusyError`. ``rebuild`` ignores the existing index entirely.
    ``executor`` embeds the new passages (default: the one ``settings.executor`` names, made
    for this build and closed after it).
    ``before`` runs under the lock before the seeds are read: a change to the seeds made there
    (an upload, a deletion) is never raced by another build.
    """
    own = executor is None
    # Made before the lock is taken: a missing extra is refused without touching the index.
    executor_ = make_executor(settings) if executor is None else executor
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.index_dir / store.LOCK))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        if own:
            executor_.close()
        raise IndexBusyError(
            f"another build is already running on '{settings.index_dir}' "
            f"(lock file '{settings.index_dir / store.LOCK}'); try again when it has finished"
        ) from None
    try:
        if before is not None:
            before()
        return _build_locked(
            settings, embedder=embedder, executor=executor_, rebuild=rebuild, progress=progress
        )
    finally:
        if own:
            executor_.close()
        lock.release()


def _build_locked(
    settings: Settings,
    *,
    embedder: Embedder | None,
    executor: Executor,
    rebuild: bool,
    progress: bool,
) -> BuildSummary:
    started = time.perf_counter()
    # Leftovers of builds that were killed are removed before anything else.
    store.prune(settings.index_dir, keep=settings.keep_generations)
    previous = _load_previous(settings, rebuild=rebuild)
    # PDF and Word texts extracted by the previous build are reused, by content hash.
    known = partial(store.read_extracted, previous.folder) if previous else None
    files, skipped = scan(settings.seeds_dir, known=known)
    summary = BuildSummary(skipped=len(skipped), skipped_files=skipped)
    passages, documents, embedder_ = _collect_passages(settings, files, previous, embedder, summary)
    summary.passages = len(passages)
    summary.changed = previous is None or bool(
        summary.added or summary.updated or summary.removed or summary.renamed
    )
    if not summary.changed:
        summary.generation = store.current_generation(settings.index_dir)
        summary.took_ms = round((time.perf_counter() - started) * 1000, 1)
        return summary

    vectors, sentence_vectors, summary.embedded = _vectors_for(
        passages, previous, embedder_, settings, executor=executor, progress=progress
    )
    if embedder_ is None and previous is None:
        embedder_ = load_embedder(settings)  # an empty seeds folder still records the model
    if embedder_ is not None:
        model_info = {
            "id": embedder_.model_id,
            "dimension": embedder_.dimension,
            "max_seq_length": embedder_.max_seq_length,
        }
    else:
        assert previous is not None  # narrowed above; kept for mypy
        model_info = previous.model
    extracted = {
        f.content_hash: {"text": f.text, "title": f.meta_title, "date": f.meta_date}
        for f in files
        if f.extracted
    }
    with store.staging(settings.index_dir) as (generation, folder):
        _write_generation(
            folder, settings, passages, vectors, sentence_vectors, documents, model_info, extracted
        )
        store.set_current(settings.index_dir, generation)
    store.prune(settings.index_dir, keep=settings.keep_generations)
    summary.generation = generation
    summary.took_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info("built generation %s: %s", generation, summary.to_json())
    return summary


def _collect_passages(
    settings: Settings,
    files: list[SeedFile],
    previous: _Previous | None,
    embedder: Embedder | None,
    summary: BuildSummary,
) -> tuple[list[Passage], dict[str, dict[str, Any]], Embedder | None]:
    """Every passage of the seeds and each document's record, counting the changes in
    ``summary``. Unchanged files keep their passages; only new or edited ones are parsed and
    chunked (which loads the embedder, for its tokenizer)."""
    prev_docs = previous.documents if previous else {}
    prev_rows: dict[str, list[int]] = {}
    if previous:
        for row, p in enumerate(previous.passages):
            prev_rows.setdefault(p.source, []).append(row)
    current = {f.source for f in files}
    removed_hashes = {d["hash"]: src for src, d in prev_docs.items() if src not in current}
    passages: list[Passage] = []
    documents: dict[str, dict[str, Any]] = {}
    for seed in files:
        before = prev_docs.get(seed.source)
        if before is not None and before["hash"] == seed.content_hash and previous:
            summary.unchanged += 1
            passages.extend(previous.passages[r] for r in prev_rows.get(seed.source, []))
            documents[seed.source] = before
            continue
        if before is not None:
            summary.updated += 1
        elif seed.content_hash in removed_hashes:
            summary.renamed += 1
            del removed_hashes[seed.content_hash]
        else:
            summary.added += 1
        if embedder is None:
            embedder = load_embedder(settings)
        article = parse_article(seed)
        new = make_passages(
            article,
            embedder,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
        )
        passages.extend(new)
        documents[seed.source] = _document_record(seed, article, new)
    summary.removed = len(removed_hashes)
    return passages, documents, embedder


def _document_record(seed: SeedFile, article: Article, passages: list[Passage]) -> dict[str, Any]:
    """What the manifest keeps of one document."""
    return {
        "hash": seed.content_hash,
        "title": article.title,
        "date": article.date,
        "publisher": article.publisher,
        "bytes": seed.size if seed.size is not None else len(seed.text.encode("utf-8")),
        "passages": [p.chunk_id for p in passages],
        # Words of the site chrome left out of the index: small, and lets a question that
        # names the site ("the CNUS article") be recognised as about this article.
        "chrome_terms": sorted({t for s, e in article.chrome for t in tokenize(article.text[s:e])}),
    }


def _vectors_for(
    passages: list[Passage],
    previous: _Previous | None,
    embedder: Embedder | None,
    settings: Settings,
    *,
    executor: Executor,
    progress: bool,
) -> tuple[Vectors, Vectors, int]:
    """Passage and sentence vectors for ``passages``, reusing every vector whose embedded text
    was embedded before. Returns (passage vectors, sentence vectors in passage order, embedded)."""
    known: dict[str, tuple[Vectors, Vectors]] = {}
    if previous is not None:
        starts = store.sentence_starts(previous.passages)
        for row, p in enumerate(previous.passages):
            sents = previous.sentences[starts[row] : starts[row + 1]]
            known[p.embed_hash] = (previous.vectors[row], sents)
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
    dim = embedder.dimension if embedder else (previous.vectors.shape[1] if previous else 1)
    if not passages:
        empty = np.zeros((0, dim), dtype=np.float32)
        return empty, empty, 0
    vectors = np.stack([known[p.embed_hash][0] for p in passages]).astype(np.float32)
    sentences = np.concatenate([known[p.embed_hash][1] for p in passages]).astype(np.float32)
    return vectors, sentences.reshape(-1, dim), len(todo)


def _write_generation(
    folder: Path,
    settings: Settings,
    passages: list[Passage],
    vectors: Vectors,
    sentence_vectors: Vectors,
    documents: dict[str, dict[str, Any]],
    model_info: dict[str, Any],
    extracted: dict[str, dict[str, Any]],
) -> None:
    """Build the FAISS and BM25 indexes for ``passages`` and have storage write the generation."""
    index_type = choose_index_type(
        len(passages),
        exact_threshold=settings.exact_threshold,
        approximate=settings.approximate_index,
    )
    index, index_info = build_faiss(
        vectors.reshape(len(passages), model_info["dimension"]),
        index_type=index_type,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
    )
    store.write_generation(
        folder,
        passages=passages,
        vectors=vectors,
        sentence_vectors=sentence_vectors,
        faiss_index=index,
        lexical=LexicalIndex.build([p.embed_text() for p in passages]),
        extracted=extracted,
        manifest={
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": model_info,
            "chunking": store.chunking_settings(settings),
            "index": index_info,
            "metric": "inner_product_on_unit_vectors",
            "documents": documents,
            "versions": _versions(),
        },
    )


__all__ = ["BuildSummary", "QAError", "build_index"]
