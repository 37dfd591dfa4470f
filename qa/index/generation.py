"""A loaded index generation: passages, vectors (FAISS), BM25 and the manifest, all checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from qa.config import Settings
from qa.index import storage
from qa.index.lexical import LexicalIndex, tokenize
from qa.index.vectors import tune_for_search
from qa.ingest.passages import Passage

log = logging.getLogger(__name__)


@dataclass(eq=False)
class IndexGeneration:
    """One immutable generation, fully in memory. Queries hold a reference for their duration."""

    generation: str
    path: Path
    manifest: dict[str, Any]
    passages: list[Passage]
    faiss_index: faiss.Index
    lexical: LexicalIndex
    #: Unit vectors, row i for passage i (memory-mapped): cosine for any passage, not just hits.
    vectors: npt.NDArray[np.float32]
    #: Sentence vectors of all passages, in passage order; passage i owns rows
    #: ``sentence_start[i]:sentence_start[i + 1]``.
    sentence_vectors: npt.NDArray[Any]
    sentence_start: npt.NDArray[np.int64]
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


def load_index(settings: Settings, *, verify: bool = True) -> IndexGeneration:
    """Load the live generation, checking compatibility and (by default) every file's checksum."""
    stored = storage.read_generation(settings, verify=verify)
    index, lexical = storage.read_search_indexes(stored)
    tune_for_search(index, ef_search=settings.hnsw_ef_search)
    by_source: dict[str, list[int]] = {}
    for row, p in enumerate(stored.passages):
        by_source.setdefault(p.source, []).append(row)
    log.info("loaded index generation %s (%d passages)", stored.folder.name, len(stored.passages))
    return IndexGeneration(
        generation=stored.folder.name,
        path=stored.folder,
        manifest=stored.manifest,
        passages=stored.passages,
        faiss_index=index,
        lexical=lexical,
        vectors=stored.vectors,
        sentence_vectors=stored.sentence_vectors,
        sentence_start=stored.sentence_start,
        by_source=by_source,
    )
