"""A loaded index generation: passages, vectors (FAISS), BM25 and the manifest, all checked."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from qa import store
from qa.config import Settings
from qa.embedder import model_id_for
from qa.errors import IndexCorruptError, IndexMismatchError
from qa.lexical import LexicalIndex, tokenize
from qa.passages import Passage
from qa.vectors import tune_for_search

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Bumped whenever article cleaning, sentence splitting or chunking changes its output.
CHUNKER_VERSION = 1


def chunking_settings(settings: Settings) -> dict[str, Any]:
    """The settings that decide passage boundaries; an index is only valid for these."""
    return {
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "chunker_version": CHUNKER_VERSION,
    }


def check_compatible(manifest: dict[str, Any], settings: Settings, *, where: Path) -> None:
    """Refuse an index built for another schema, model or chunking, saying how to rebuild."""
    rebuild = (
        f"rebuild it with `python -m qa index --rebuild --index {where.parent.parent}` "
        "(or point the settings back at what it was built with)"
    )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise IndexMismatchError(
            f"index '{where}' has schema version {manifest.get('schema_version')!r}, this "
            f"seedqa reads version {SCHEMA_VERSION}; {rebuild}"
        )
    built_model = manifest.get("model", {}).get("id")
    wanted_model = model_id_for(settings.model)
    if built_model != wanted_model:
        raise IndexMismatchError(
            f"index '{where}' was built with model {built_model!r}, but the settings ask for "
            f"{wanted_model!r}; {rebuild}"
        )
    built_chunking = manifest.get("chunking")
    wanted_chunking = chunking_settings(settings)
    if built_chunking != wanted_chunking:
        raise IndexMismatchError(
            f"index '{where}' was built with chunking {built_chunking}, but the settings ask for "
            f"{wanted_chunking}; {rebuild}"
        )


@dataclass(eq=False)
class IndexGeneration:
    """One immutable generation, fully in memory. Queries hold a reference for their duration."""

    generation: str
    path: Path
    manifest: dict[str, Any]
    passages: list[Passage]
    faiss_index: Any
    lexical: LexicalIndex
    #: Unit vectors, row i for passage i (memory-mapped): cosine for any passage, not just hits.
    vectors: Any
    #: Sentence vectors of all passages, in passage order; passage i owns rows
    #: ``sentence_start[i]:sentence_start[i + 1]``.
    sentence_vectors: Any
    sentence_start: Any
    #: source -> row numbers of its passages, in order.
    by_source: dict[str, list[int]] = field(default_factory=dict)
    _article_terms: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _chrome_vocabulary: frozenset[str] | None = field(default=None, repr=False)

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        """Per-source metadata recorded at build time."""
        docs: dict[str, dict[str, Any]] = self.manifest.get("documents", {})
        return docs

    def article_terms(self, source: str) -> frozenset[str]:
        """Every (stemmed) term of one article's passages and title, cached per generation."""
        cached = self._article_terms.get(source)
        if cached is None:
            terms: set[str] = set()
            for row in self.by_source.get(source, []):
                p = self.passages[row]
                terms.update(tokenize(f"{p.title or ''} {p.text}"))
            terms.update(self.documents.get(source, {}).get("chrome_terms", []))
            cached = self._article_terms[source] = frozenset(terms)
        return cached

    def knows(self, word: str) -> bool:
        """Whether any article mentions ``word`` (in indexed text or in its site chrome)."""
        if self._chrome_vocabulary is None:
            self._chrome_vocabulary = frozenset(
                t for d in self.documents.values() for t in d.get("chrome_terms", [])
            )
        return self.lexical.knows(word) or set(tokenize(word)) <= self._chrome_vocabulary

    def sentence_scores(self, row: int, vector: npt.NDArray[np.float32]) -> list[float]:
        """Cosine of each sentence of passage ``row`` with the question ``vector``."""
        lo, hi = int(self.sentence_start[row]), int(self.sentence_start[row + 1])
        block = np.asarray(self.sentence_vectors[lo:hi], dtype=np.float32)
        return [float(x) for x in block @ vector.reshape(-1)]

    @property
    def built_at(self) -> str | None:
        """When this generation was built (ISO 8601, UTC)."""
        value = self.manifest.get("built_at")
        return str(value) if value is not None else None


def sentence_starts(passages: list[Passage]) -> npt.NDArray[np.int64]:
    """Prefix sums of sentence counts: passage i owns sentence rows ``[s[i], s[i + 1])``."""
    counts = np.fromiter((len(p.sentences) for p in passages), dtype=np.int64, count=len(passages))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def read_passages(folder: Path) -> list[Passage]:
    """The passage store of a generation folder."""
    path = folder / "passages.jsonl"
    try:
        with open(path, encoding="utf-8") as fh:
            return [Passage.from_json(json.loads(line)) for line in fh if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorruptError(f"passage store '{path}' is unreadable: {exc}") from None


def load_index(settings: Settings, *, verify: bool = True) -> IndexGeneration:
    """Load the live generation, checking compatibility and (by default) every file's checksum."""
    folder = store.current_path(settings.index_dir)
    manifest = store.read_manifest(folder)
    check_compatible(manifest, settings, where=folder)
    if verify:
        store.verify_checksums(folder, manifest.get("files", {}))
    passages = read_passages(folder)
    try:
        index = faiss.read_index(str(folder / "index.faiss"))
    except RuntimeError as exc:
        raise IndexCorruptError(
            f"FAISS index '{folder / 'index.faiss'}' is unreadable: {exc}"
        ) from None
    if index.ntotal != len(passages) or manifest.get("passages") != len(passages):
        raise IndexCorruptError(
            f"index '{folder}' holds {index.ntotal} vectors for {len(passages)} passages; "
            "run `python -m qa index --rebuild`"
        )
    tune_for_search(index, ef_search=settings.hnsw_ef_search)
    lexical = LexicalIndex.load(folder / "bm25", len(passages))
    vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
    sentence_vectors = np.load(folder / "sentences.npy", mmap_mode="r", allow_pickle=False)
    starts = sentence_starts(passages)
    if starts[-1] != len(sentence_vectors):
        raise IndexCorruptError(f"index '{folder}' has a sentence vector count that does not match")
    by_source: dict[str, list[int]] = {}
    for row, p in enumerate(passages):
        by_source.setdefault(p.source, []).append(row)
    log.info("loaded index generation %s (%d passages)", folder.name, len(passages))
    return IndexGeneration(
        generation=folder.name,
        path=folder,
        manifest=manifest,
        passages=passages,
        faiss_index=index,
        lexical=lexical,
        vectors=vectors,
        sentence_vectors=sentence_vectors,
        sentence_start=starts,
        by_source=by_source,
    )
